"""Pretraining of gray-box processors whose shape is learned directly (MLP / rational nonlinearities,
FIR filters), so that gray-box training starts from a sensible curve or response.

A processor asks for it in its params.yaml spec::

    - {type: mlp, pretrain: tanh}                       # or {curve: tanh, x_range: 3.0}
    - {type: rational, pretrain: {curve: asym}}
    - {type: fir, pretrain: {response: lowpass, cutoff_hz: 4000, q: 0.707}}

Curves: :data:`nablafx.dsp.nonlinear.CURVES`.  FIR responses: the magnitude of an RBJ biquad
(:data:`nablafx.dsp.biquad.KINDS`, with ``cutoff_hz``, ``q``, ``gain_db``), fitted in dB on an
``n_fft`` grid (the phase is left free).  Optimiser settings come from params.yaml ``pretrain:``.

:func:`pretrain_variant` returns the weights and a summary; :func:`save_pretrained` writes
``<dir>/p<index>-<type>.pt`` per processor and ``<dir>/summary.json``; :func:`load_pretrained`
seeds a built model from such a folder.  A chain without ``pretrain`` entries (or another model
family) gives an empty summary, and loading it changes nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from nablafx import fileio
from nablafx.config import data_config, read_section, section, setting
from nablafx.dsp import biquad
from nablafx.dsp.filters import freqz, fsm_impulse_response
from nablafx.dsp.nonlinear import CURVES
from nablafx.errors import PARAMS_FILE, ConfigError
from nablafx.processors import build_processor
from nablafx.registry import resolve_variant

SUMMARY = "summary.json"
FORMAT_VERSION = 1  # layout of the folder: <stem>.pt state dicts + summary.json
NONLINEAR_TYPES = ("mlp", "rational")
FIR_TYPES = ("fir",)
FIR_FLOOR = 1e-3  # −60 dB: magnitude floor of FIR targets (a short FIR cannot reach a biquad's zeros)


@section("pretrain")
@dataclass
class PretrainSettings:
    """params.yaml ``pretrain:``."""

    seed: int = setting()
    steps: int = setting(ge=1)  # Adam steps per processor
    lr: float = setting(gt=0)  # Adam learning rate for nonlinearities
    fir_lr: float = setting(gt=0)  # Adam learning rate refining FIR taps (they start at the FSM design)
    x_range: float = setting(gt=0)  # nonlinearities are fitted on [−x_range, x_range]
    n_points: int = setting(ge=1)
    n_fft: int = setting(ge=1)  # FIR responses are fitted on n_fft // 2 + 1 bins


def pretrain_config(params: dict) -> PretrainSettings:
    return read_section(params, PretrainSettings)


def _target_spec(proc_type: str, target, key: str) -> dict:
    """Normalise and check a processor's ``pretrain`` entry; errors name ``key``."""
    if proc_type in NONLINEAR_TYPES:
        if isinstance(target, str):
            target = {"curve": target}
        if not isinstance(target, dict) or "curve" not in target:
            raise ConfigError(f"expected a curve name or {{curve: name}}, got {target!r}", key, PARAMS_FILE)
        extra = set(target) - {"curve", "x_range"}
        if extra:
            raise ConfigError("unknown key; allowed: curve, x_range", f"{key}.{sorted(extra)[0]}", PARAMS_FILE)
        if target["curve"] not in CURVES:
            raise ConfigError(f"unknown curve {target['curve']!r}; known: {', '.join(CURVES)}", f"{key}.curve",
                              PARAMS_FILE)
        return dict(target)
    if proc_type in FIR_TYPES:
        if not isinstance(target, dict) or "response" not in target:
            raise ConfigError("expected {response: kind, cutoff_hz: ..., q: ..., gain_db: ...}", key, PARAMS_FILE)
        extra = set(target) - {"response", "cutoff_hz", "q", "gain_db"}
        if extra:
            raise ConfigError("unknown key; allowed: response, cutoff_hz, q, gain_db", f"{key}.{sorted(extra)[0]}",
                              PARAMS_FILE)
        if target["response"] not in biquad.KINDS:
            raise ConfigError(f"unknown {target['response']!r}; known: {', '.join(biquad.KINDS)}", f"{key}.response",
                              PARAMS_FILE)
        return {"cutoff_hz": 1000.0, "q": 0.7071, "gain_db": 0.0, **target}
    raise ConfigError(f"processor {proc_type!r} cannot be pretrained; "
                      f"pretrainable: {', '.join(NONLINEAR_TYPES + FIR_TYPES)}", key, PARAMS_FILE)


def pretrain_entries(processors: list, key: str = "processors") -> list[tuple[int, dict, dict]]:
    """``(index, processor spec, target)`` for every processor with a ``pretrain`` entry."""
    out = []
    for i, spec in enumerate(processors or []):
        if isinstance(spec, dict) and spec.get("pretrain") is not None:
            out.append((i, spec, _target_spec(spec.get("type"), spec["pretrain"], f"{key}[{i}].pretrain")))
    return out


def _descend(module: torch.nn.Module, loss_fn, lr: float, steps: int) -> float:
    """Adam on ``loss_fn()``; leaves ``module`` at the best parameters seen (the start included).

    These problems are tiny: one CPU thread is fastest (and immune to oversubscribed machines).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        opt = torch.optim.Adam(module.parameters(), lr=lr)
        best, best_state = math.inf, None
        for _ in range(steps + 1):
            opt.zero_grad()
            loss = loss_fn()
            if loss.item() < best:
                best, best_state = loss.item(), {k: v.detach().clone() for k, v in module.state_dict().items()}
            loss.backward()
            opt.step()
        if best_state is not None:
            module.load_state_dict(best_state)
        return best
    finally:
        torch.set_num_threads(threads)


def fit_nonlinearity(proc, target: dict, settings: PretrainSettings) -> dict:
    """Fit ``proc.curve`` (base rate, no oversampling needed for a static curve) to a named curve."""
    x_range = float(target.get("x_range", settings.x_range))
    x = torch.linspace(-x_range, x_range, settings.n_points).reshape(1, 1, -1)
    y = CURVES[target["curve"]](x)
    _descend(proc, lambda: torch.mean((proc.curve(x, {}) - y) ** 2), settings.lr, settings.steps)
    with torch.no_grad():
        err = proc.curve(x, {}) - y
    return {"mse": float(err.pow(2).mean()), "max_abs_error": float(err.abs().max()), "x_range": x_range}


def _target_response(target: dict, n_fft: int, sample_rate: int) -> torch.Tensor:
    b, a = biquad.design(target["response"], torch.tensor(float(target["gain_db"]), dtype=torch.float64),
                         torch.tensor(float(target["cutoff_hz"]), dtype=torch.float64),
                         torch.tensor(float(target["q"]), dtype=torch.float64), sample_rate)
    return freqz(b, a, n_fft)


def fit_fir(proc, target: dict, settings: PretrainSettings) -> dict:
    """Fit the FIR's magnitude response (dB, floored at −60 dB, phase free) to a biquad's.

    Starts from the frequency-sampling design (the biquad's impulse response, time-aliased onto
    ``n_fft`` samples and truncated to the taps), then refines the log magnitude by gradient descent.
    """
    response = _target_response(target, settings.n_fft, proc.sample_rate)
    target_db = 20.0 * torch.log10(response.abs().clamp_min(FIR_FLOOR)).float()
    with torch.no_grad():
        proc.taps.copy_(fsm_impulse_response(response, min(proc.n_taps, settings.n_fft)).float()
                        if proc.n_taps <= settings.n_fft else
                        torch.nn.functional.pad(fsm_impulse_response(response, settings.n_fft).float(),
                                                (0, proc.n_taps - settings.n_fft)))
    one = torch.ones(1)

    def response_db():
        return 20.0 * torch.log10(freqz(proc.taps, one, settings.n_fft).abs().clamp_min(FIR_FLOOR))

    _descend(proc, lambda: torch.mean((response_db() - target_db) ** 2), settings.fir_lr, settings.steps)
    with torch.no_grad():
        err = response_db() - target_db
    return {"rms_error_db": float(err.pow(2).mean().sqrt()), "max_abs_error_db": float(err.abs().max())}


def pretrain_variant(variant: str, spec: dict, settings: PretrainSettings, sample_rate: int = 48000,
                     key: str | None = None) -> tuple[dict[str, dict], dict]:
    """Pretrain every processor of a gray-box ``spec`` that asks for it.

    Returns ``(weights, summary)``: ``weights`` maps file stems (``p2-mlp``) to state dicts.
    Non-gray-box families and chains without ``pretrain`` entries give no weights.
    """
    key = key or f"variants.{variant}"
    summary = {"variant": variant, "family": spec.get("family"), "settings": asdict(settings), "processors": {}}
    weights: dict[str, dict] = {}
    if spec.get("family") != "graybox":
        return weights, summary
    for index, pspec, target in pretrain_entries(spec.get("processors"), f"{key}.processors"):
        torch.manual_seed(settings.seed + index)
        try:
            proc = build_processor(pspec, sample_rate, f"processors[{index}]")
        except ConfigError as err:
            raise err.under(key, PARAMS_FILE) from err
        if pspec["type"] in NONLINEAR_TYPES:
            metrics = fit_nonlinearity(proc, target, settings)
        else:
            metrics = fit_fir(proc, target, settings)
        stem = f"p{index}-{pspec['type']}"
        weights[stem] = {k: v.detach().clone() for k, v in proc.state_dict().items()}
        summary["processors"][stem] = {
            "index": index,
            "type": pspec["type"],
            "spec": _plain_spec(pspec),
            "target": target,
            "steps": settings.steps,
            **metrics,
        }
        if not all(math.isfinite(v) for v in metrics.values() if isinstance(v, float)):
            raise RuntimeError(f"{key}.processors[{index}]: pretraining diverged ({metrics})")
    return weights, summary


def _plain_spec(pspec: dict) -> dict:
    """A processor spec without ``controller`` / ``pretrain`` (what the weights depend on)."""
    return {k: v for k, v in pspec.items() if k not in ("controller", "pretrain")}


def save_pretrained(directory: str | os.PathLike, weights: dict[str, dict], summary: dict) -> Path:
    """Write the folder atomically: it is built beside ``directory`` and swapped in whole, so a
    failure leaves an existing folder untouched."""
    directory = Path(directory)
    fileio.remove_stale(directory)
    tmp = fileio.new_sibling_dir(directory)
    try:
        for stem, state in weights.items():
            fileio.save_torch(state, tmp / f"{stem}.pt")
        summary = {**summary, **fileio.written_by(FORMAT_VERSION)}
        fileio.write_text_atomic(tmp / SUMMARY, json.dumps(summary, indent=2, sort_keys=True) + "\n")
        fileio.replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_pretrained(model: torch.nn.Module, directory: str | os.PathLike) -> list[str]:
    """Seed ``model``'s processors with pretrained weights from ``directory``; returns the stems loaded.

    Checks that each pretrained processor sits at the same place in the chain with the same spec
    (else: ``ValueError`` asking to rerun the pretrain stage).  An empty summary loads nothing.
    """
    directory = Path(directory)
    summary_path = directory / SUMMARY
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path}: no pretraining summary (run the pretrain stage)")
    try:
        summary = json.loads(summary_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise fileio.CorruptFileError(f"{summary_path}: not valid JSON ({err}); rerun the pretrain stage") from None
    fileio.check_written_by(directory, summary, "pretrained", FORMAT_VERSION, "rerun the pretrain stage")
    entries = summary.get("processors") or {}
    if not entries:
        return []
    processors = getattr(model, "processors", None)
    specs = getattr(model, "specs", None)
    if processors is None or specs is None:
        raise ValueError(f"{summary_path}: holds pretrained gray-box processors, but the model is a "
                         f"{type(model).__name__}; rerun the pretrain stage for this model")
    loaded = []
    for stem, entry in sorted(entries.items(), key=lambda kv: kv[1]["index"]):
        i = entry["index"]
        if i >= len(processors) or _plain_spec(specs[i]) != entry["spec"]:
            have = _plain_spec(specs[i]) if i < len(specs) else None
            raise ValueError(f"{summary_path}: processor {i} was pretrained as {entry['spec']}, the model has "
                             f"{have}; rerun the pretrain stage for this model")
        state = fileio.load_torch(directory / f"{stem}.pt", "pretrained weights file")
        processors[i].load_state_dict(state)
        loaded.append(stem)
    return loaded


def run_pretraining(params: dict, out_dir: str | os.PathLike, variant: str | None = None) -> dict:
    """The pretrain stage: pretrain what params.yaml's model (or ``variant``) asks for, write ``out_dir``.

    Every check runs before anything is written; configuration errors are ``ConfigError`` naming the
    params.yaml key (any other exception is a bug and keeps its traceback).  Returns the summary.
    """
    name, spec = resolve_variant(params, variant)
    settings = pretrain_config(params)
    sample_rate = data_config(params).sample_rate
    weights, summary = pretrain_variant(name, spec, settings, sample_rate)
    save_pretrained(out_dir, weights, summary)
    return summary
