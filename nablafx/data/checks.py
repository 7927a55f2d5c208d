"""Signal checks on dry/wet pairs, used by :mod:`nablafx.data.prepare`: pure functions on arrays.

In the spirit of Neural Amp Modeler's data checks (its ideas, none of its code), adapted to a
ToneTwist layout where one dry file feeds every knob setting of every device:

* **latency**: the dry→wet lag by GCC-PHAT (:func:`measure_latency`);
* **clipping**: the fraction of samples at ± digital full scale (:func:`clipped_fraction`) in the
  target (refused above 1 %: the recording overloaded, the pair is no longer what the device did)
  *and* in the dry (refused above 1 % as well: a DI recorded too hot — or the files are swapped);
* **silence**: RMS below the silence level, or only a DC offset (:func:`ac_rms`: a constant
  file passes an RMS check and then misleads the latency search); leading silence and the fraction of 10 ms frames more than 60 dB below the file's
  loudest frame (:func:`silence_profile`) for the dry; for the wet, the fraction of the dry's
  active frames in which the wet is muted, 60 dB below its usual gain (:func:`muted_fraction`: a
  bass passage with rests is 40 % silent in dry and wet alike, and a slow-attack compressor's wet
  is 60 dB below its first loud frame for long stretches — neither is a defect);
* **repeats**: identical silence-separated segments of the dry — the sync impulses every
  ToneTwist dry file carries at its start and end — and the wet's answers to them
  (:func:`repeated_segments`, :func:`repeat_consistency`): the lag must be the same at every
  repeat (else the wet drifts or drops samples), every repeat must get an answer, and the first
  two repeats, heard by a device at rest, must get the same answer (NAM's replicate ESR < 0.01).
  Later repeats are only reported: after the music a device with memory answers differently
  (shipped data, 100 ms windows: the compressor's end markers differ by ESR 0.92 from its start
  markers, the fuzz's by 0.82 — envelope release and bias recovery, not defects);
* **swap**: :func:`isolated_impulses`.  The sync markers are single-sample impulses in digital
  silence; a device with any filtering smears them, one without filtering passes them as they
  are, and none turns an input without impulses into one.  A target holding marker-like
  impulses where its dry has none — while the dry is active right there — is the dry.

Thresholds are module constants, listed in ``docs/dataset-checks.md`` with the measurements
behind them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from nablafx.data.audio import full_scale

SILENCE_RMS = 1e-5              # a file (or a training region) below this RMS — or this AC RMS — is silent
FRAME_SECONDS = 0.01            # silence is measured on 10 ms frames
SILENCE_DB = -60.0              # a frame is silent when its RMS is this far below the loudest frame's
SILENT_WARN_FRACTION = 0.5      # warn when more of a dry passage than this is silent …
SILENT_REFUSE_FRACTION = 0.8    # … refuse when more than this is
MUTED_WARN_FRACTION = 0.1       # warn when the wet is silent in more than this of the dry's active frames …
MUTED_REFUSE_FRACTION = 0.5     # … refuse when in more than half
WET_LATE_WARN_SECONDS = 0.05    # warn when the wet's leading silence exceeds the dry's by this
MAX_ABS = 16.0                  # float samples beyond ±16 (+24 dBFS) are corrupt or unscaled data
CLIP_WARN_FRACTION = 1e-4       # samples at ± full scale: warn above 0.01 % …
CLIP_REFUSE_FRACTION = 0.01     # … refuse above 1 % (a "fully clipped" file is far above)
ISLAND_FLOOR_DB = -80.0         # segments of the dry: runs above peak − 80 dB …
ISLAND_GAP_SECONDS = 0.01       # … separated by at least 10 ms below it
REPEAT_WINDOW_SECONDS = 0.1     # the wet's answer to a repeat: up to 100 ms (or the next segment)
REPEAT_PRE_SAMPLES = 32         # … plus this much before it (pre-ringing of resamplers, latency)
REPEAT_ESR_WARN = 0.01          # NAM's replicate threshold, on the first two repeats
REPEAT_SILENT_DB = -60.0        # a repeat whose answer is this far below the loudest answer got none
                                # (shipped compressor's end markers after the music: -28 dB; a dropout: -inf)
IMPULSE_MIN_REL = 0.05          # an isolated impulse reaches 5 % of the file's peak …
IMPULSE_HALF_WIDTH_SECONDS = 0.002  # … and holds ≥ 90 % of the energy within ±2 ms …
IMPULSE_CONCENTRATION = 0.9     # … in its own ±1 samples
SWAP_MIN_IMPULSES = 2           # impulses in the target (none in the dry) that call a pair swapped


def measure_latency(dry: np.ndarray, wet: np.ndarray, max_lag: int) -> tuple[int, float]:
    """Dry→wet lag in samples (positive = wet late) within ±max_lag, and the peak's signed
    strength (negative = inverted polarity).

    Uses the phase-transform weighted cross-correlation (GCC-PHAT): every frequency counts
    equally, so a pedal's tone filters (whose phase shifts the plain cross-correlation peak
    by several samples on bass-heavy material) do not pass for latency; a real delay
    shifts all frequencies alike and still shows.
    """
    n = len(dry) + len(wet)
    nfft = 1 << (n - 1).bit_length()
    cross = np.fft.rfft(wet.astype(np.float64), nfft) * np.conj(np.fft.rfft(dry.astype(np.float64), nfft))
    mag = np.abs(cross)
    cross = cross / (mag + 1e-12 * mag.max() + 1e-30)
    xc = np.fft.irfft(cross, nfft)
    lags = np.concatenate([np.arange(0, max_lag + 1), np.arange(-max_lag, 0)])
    vals = np.concatenate([xc[: max_lag + 1], xc[-max_lag:]])
    i = int(np.argmax(np.abs(vals)))
    return int(lags[i]), float(vals[i])


def audio_digest(x: np.ndarray) -> str:
    """SHA-256 of the decoded samples (float32): equal for the same audio in WAV and FLAC."""
    return hashlib.sha256(np.ascontiguousarray(x, dtype=np.float32).tobytes()).hexdigest()


def insane_sample(x: np.ndarray) -> int | None:
    """Index of the first sample beyond ±MAX_ABS (a float file's corrupt bytes, or integer audio
    stored as float without scaling), or None."""
    bad = np.flatnonzero(np.abs(x) > MAX_ABS)
    return int(bad[0]) if len(bad) else None


def clipped_fraction(x: np.ndarray, subtype: str) -> float:
    """Fraction of samples at ± digital full scale that sit in runs (a neighbour at the same extreme):
    a flat top, not a peak that touches the limit once.

    Integer formats: the extremes are the largest code (32767/32768 for 16-bit) and the most
    negative codes (−32767/32768, −1).  Float formats have no full scale — a float file may hold
    values beyond ±1 unclipped — so there the extremes are the file's own maximum (minimum) when
    it reaches +1 (−1): a file clipped at or beyond ±1 sits there for whole runs, unclipped overs
    and a periodic peak do not.
    """
    if len(x) < 2:
        return 0.0
    if subtype in ("FLOAT", "DOUBLE"):
        hi, lo = x.max(), x.min()
        top = (x >= hi) if hi >= 1.0 else np.zeros(len(x), dtype=bool)
        bottom = (x <= lo) if lo <= -1.0 else np.zeros(len(x), dtype=bool)
    else:
        fs = np.float32(full_scale(subtype))
        top, bottom = x >= fs, x <= -fs
    n = 0
    for at in (top, bottom):
        run = np.zeros(len(x), dtype=bool)
        run[1:] |= at[1:] & at[:-1]
        run[:-1] |= at[:-1] & at[1:]
        n += int(np.count_nonzero(run))
    return float(n / len(x))


def ac_rms(x: np.ndarray) -> float:
    """RMS of ``x`` without its mean: the level of the signal a model can learn from.  A file whose
    RMS is above the silence level but whose ``ac_rms`` is not holds nothing but a DC offset."""
    x = np.asarray(x, dtype=np.float64)
    return float(np.sqrt(np.mean((x - np.mean(x)) ** 2))) if len(x) else 0.0


def silent_frames(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """``(silent, floor)``: per 10 ms frame, whether its RMS lies more than 60 dB below the loudest
    frame's (the loudest *frame*, not sample: a lone sync impulse barely moves it), and that level."""
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    n = max(1, len(x) // frame)
    x = np.asarray(x, dtype=np.float64)
    padded = np.zeros(n * frame)
    padded[: min(len(x), n * frame)] = x[: n * frame]
    rms = np.sqrt(np.mean(padded.reshape(n, frame) ** 2, axis=1))
    floor = float(rms.max()) * 10 ** (SILENCE_DB / 20)
    return (rms <= floor) if floor > 0 else np.ones(n, dtype=bool), floor


def silence_profile(x: np.ndarray, sample_rate: int) -> tuple[float, float]:
    """``(leading_silence_seconds, silent_fraction)``: time before the first sample above the
    silence level of :func:`silent_frames`, and the fraction of frames below it (all silent: 1.0)."""
    silent, floor = silent_frames(x, sample_rate)
    loud = np.abs(x) > floor
    if floor == 0 or not loud.any():
        return len(x) / sample_rate, 1.0
    return int(np.argmax(loud)) / sample_rate, float(np.mean(silent))


def _frame_rms(x: np.ndarray, sample_rate: int) -> np.ndarray:
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    n = len(x) // frame
    return np.sqrt(np.mean(np.asarray(x[: n * frame], dtype=np.float64).reshape(n, frame) ** 2, axis=1))


def muted_fraction(dry: np.ndarray, wet: np.ndarray, sample_rate: int) -> float:
    """Fraction of the dry's non-silent frames in which the wet is muted: its gain (wet level over
    dry level in that frame) more than 60 dB below the pair's usual gain, its 95th percentile —
    so a quiet device or a compressor's gain reduction is no mute, a dropout or a failed render
    is, even when it lasts most of the passage."""
    dry_silent, _ = silent_frames(dry, sample_rate)
    rd, rw = _frame_rms(dry, sample_rate), _frame_rms(wet, sample_rate)
    n = min(len(rd), len(rw), len(dry_silent))
    active = ~dry_silent[:n] & (rd[:n] > 0)
    if not active.any():
        return 0.0
    gain_db = 20 * np.log10(np.maximum(rw[:n][active], 1e-12) / rd[:n][active])
    return float(np.mean(gain_db < np.percentile(gain_db, 95) + SILENCE_DB))


def segments(x: np.ndarray, sample_rate: int) -> list[tuple[int, int]]:
    """Silence-separated ``[start, end)`` runs of ``x`` (above peak − 80 dB, gaps ≥ 10 ms)."""
    a = np.abs(x)
    if len(a) == 0 or a.max() == 0:
        return []
    idx = np.flatnonzero(a > a.max() * 10 ** (ISLAND_FLOOR_DB / 20))
    gap = max(1, int(round(ISLAND_GAP_SECONDS * sample_rate)))
    breaks = np.flatnonzero(np.diff(idx) > gap)
    starts = np.concatenate([idx[:1], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], idx[-1:]]) + 1
    return [(int(s), int(e)) for s, e in zip(starts, ends)]


def repeated_segments(x: np.ndarray, sample_rate: int) -> tuple[list[tuple[int, int]], list[list[int]]]:
    """``(segments, groups)``: the dry's segments and, for every content that occurs more than
    once (sample for sample), the indices of its occurrences in time order."""
    segs = segments(x, sample_rate)
    by_content: dict[tuple[int, str], list[int]] = {}
    for k, (s, e) in enumerate(segs):
        by_content.setdefault((e - s, audio_digest(x[s:e])), []).append(k)
    return segs, [g for g in by_content.values() if len(g) > 1]


def _esr(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric error-to-signal ratio: ‖a − b‖² / max(‖a‖², ‖b‖²)."""
    den = max(float(a @ a), float(b @ b))
    return float((a - b) @ (a - b)) / den if den > 0 else 0.0


def repeat_consistency(dry: np.ndarray, wet: np.ndarray, segs: list[tuple[int, int]], groups: list[list[int]],
                       sample_rate: int, max_lag: int) -> list[dict]:
    """For each group of identical dry segments, the wet's answers: per repeat its start (s), lag
    (GCC-PHAT within ±max_lag) and level (dB re the loudest answer); the ESR between the answers
    to the first two repeats (``leading_esr``, None unless nothing but silence precedes the first:
    a device at rest) and the largest ESR between any two (``max_esr``, device memory included)."""
    out = []
    window = int(round(REPEAT_WINDOW_SECONDS * sample_rate))
    for group in groups:
        starts = [segs[k][0] for k in group]
        nexts = [segs[k + 1][0] if k + 1 < len(segs) else len(dry) for k in group]
        prevs = [segs[k - 1][1] if k > 0 else 0 for k in group]
        length = min(window, *(n - s for s, n in zip(starts, nexts)))
        pre = min(REPEAT_PRE_SAMPLES, *(s - p for s, p in zip(starts, prevs)))
        wins = [(s - pre, s + length) for s in starts]
        answers = [wet[a:b].astype(np.float64) for a, b in wins]
        energy = np.array([float(w @ w) for w in answers])
        top = energy.max()
        level_db = [round(float(10 * np.log10(e / top)), 1) if top > 0 and e > 0 else None for e in energy]
        lags = []
        for (a, b), e in zip(wins, energy):
            lags.append(measure_latency(dry[a:b], wet[a:b], max(max_lag, 1))[0] if top > 0 and e > 0 else None)
        pairs = [(i, j) for i in range(len(answers)) for j in range(i + 1, len(answers))]
        out.append({
            "at_s": [round(s / sample_rate, 4) for s in starts],
            "samples": segs[group[0]][1] - segs[group[0]][0],
            "lags": lags,
            "level_db": level_db,
            "leading_esr": round(_esr(answers[0], answers[1]), 6) if group[0] == 0 else None,
            "max_esr": round(max(_esr(answers[i], answers[j]) for i, j in pairs), 6),
            # for comparisons across files (not JSON): the segment's content and the answer at rest
            "_key": (pre, audio_digest(dry[starts[0]: segs[group[0]][1]])) if group[0] == 0 else None,
            "_answer": answers[0] if group[0] == 0 else None,
        })
    return out


def answers_differ(a: np.ndarray, b: np.ndarray) -> float:
    """ESR between two answers to the same segment (compared over the shorter of the two)."""
    n = min(len(a), len(b))
    return _esr(a[:n], b[:n])


def isolated_impulses(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Positions of marker-like impulses: a sample ≥ 5 % of the peak whose ±1 neighbourhood holds
    ≥ 90 % of the energy within ±2 ms (one position per cluster)."""
    a = np.abs(x)
    n = len(a)
    if n == 0 or a.max() == 0:
        return np.zeros(0, dtype=np.int64)
    w = max(2, int(round(IMPULSE_HALF_WIDTH_SECONDS * sample_rate)))
    cum = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    cand = np.flatnonzero(a >= IMPULSE_MIN_REL * a.max())
    near = cum[np.minimum(cand + 2, n)] - cum[np.maximum(cand - 1, 0)]
    wide = cum[np.minimum(cand + w + 1, n)] - cum[np.maximum(cand - w, 0)]
    pos = cand[near >= IMPULSE_CONCENTRATION * wide]
    if len(pos) == 0:
        return pos
    keep = np.concatenate([[True], np.diff(pos) > w])
    return pos[keep]


def swapped_evidence(dry: np.ndarray, wet: np.ndarray, sample_rate: int, max_lag: int) -> list[int]:
    """Positions where the target holds an isolated impulse, the dry holds none anywhere, and the
    dry is active from there on (its answer to that impulse): the evidence that dry and target are
    swapped.  Empty when the dry has impulses of its own, or the target has none."""
    if len(isolated_impulses(dry, sample_rate)):
        return []
    w = max(2, int(round(IMPULSE_HALF_WIDTH_SECONDS * sample_rate)))
    peak = float(np.abs(dry).max()) if len(dry) else 0.0
    hits = []
    for p in isolated_impulses(wet, sample_rate):
        around = np.abs(dry[max(0, p - max_lag): p + w])
        if peak > 0 and len(around) and around.max() >= IMPULSE_MIN_REL * peak:
            hits.append(int(p))
    return hits
