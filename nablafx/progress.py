"""Progress reports for long work: a bar on a terminal, a plain line every N seconds in logs.

    prog = Progress(total=n_samples, label="process", unit="s", scale=1 / sample_rate)
    for ...:
        prog.update(block, loss=0.12)   # extra fields are shown as name=value
    prog.close()

On a terminal (``stream.isatty()``) one line is redrawn in place at most ten times a second; in a
log (DVC captures stdout and stderr into files) a line is written every ``NABLAFX_PROGRESS_SECONDS``
seconds (default :data:`DEFAULT_EVERY_S`), so a short run prints nothing and a long one shows it is
alive.  Each line gives the amount done, the rate and the estimated time left.  The interval is an
environment setting, not a params.yaml one: it changes no result, and DVC must not rerun a stage
because a user wants more frequent lines.
"""

from __future__ import annotations

import os
import sys
import time

ENV_EVERY = "NABLAFX_PROGRESS_SECONDS"
DEFAULT_EVERY_S = 10.0
TTY_REDRAW_S = 0.1


def every_seconds() -> float:
    """The log-line interval from ``NABLAFX_PROGRESS_SECONDS`` (≤ 0: never), else the default."""
    value = os.environ.get(ENV_EVERY)
    if not value:
        return DEFAULT_EVERY_S
    try:
        return float(value)
    except ValueError:
        return DEFAULT_EVERY_S


def format_seconds(s: float) -> str:
    if s != s or s == float("inf"):  # NaN or unknown
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """Progress of ``total`` units (``scale`` converts units to what is shown, e.g. samples → s)."""

    def __init__(self, total: float, label: str, unit: str = "", scale: float = 1.0, stream=None,
                 every_s: float | None = None, tty: bool | None = None, enabled: bool = True):
        self.total = float(total)
        self.label = label
        self.unit = unit
        self.scale = scale
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)()) if tty is None else tty
        self.every_s = every_seconds() if every_s is None else every_s
        self.enabled = enabled and (self.tty or self.every_s > 0)
        self.done = 0.0
        self.t0 = time.perf_counter()
        self._last = self.t0
        self._drawn = False
        self.lines = 0  # log lines written (tests)

    def _text(self, fields: dict) -> str:
        elapsed = time.perf_counter() - self.t0
        rate = self.done / elapsed if elapsed > 0 else float("nan")
        left = (self.total - self.done) / rate if rate and rate == rate and rate > 0 else float("nan")
        pct = 100.0 * self.done / self.total if self.total > 0 else 100.0
        digits = 0 if self.scale == 1 else 1
        shown = f"{self.done * self.scale:.{digits}f}/{self.total * self.scale:.{digits}f}"
        extra = "".join(f" {k} {v:.4g}" if isinstance(v, float) else f" {k} {v}" for k, v in fields.items())
        text = (f"{self.label}: {shown} {self.unit} ({pct:.0f}%){extra}, {rate * self.scale:.3g} {self.unit or 'it'}/s, "
                f"ETA {format_seconds(left)}")
        if self.tty:
            width = 20
            filled = int(round(width * min(1.0, self.done / self.total))) if self.total > 0 else width
            text = f"[{'#' * filled}{'.' * (width - filled)}] " + text
        return text

    def update(self, n: float = 1.0, **fields) -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last >= TTY_REDRAW_S or self.done >= self.total:
                self.stream.write("\r" + self._text(fields) + "\033[K")
                self.stream.flush()
                self._last, self._drawn = now, True
        elif now - self._last >= self.every_s:
            self.stream.write(self._text(fields) + "\n")
            self.stream.flush()
            self._last = now
            self.lines += 1

    def close(self) -> None:
        if self.enabled and self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
