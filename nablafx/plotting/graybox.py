"""Gray-box views: what each block of a chain learned, per block and across each knob's range.

* filters (parametric EQ, shelves, tone stack, FIR): magnitude and phase responses;
* static nonlinearities: transfer curves over the range of values that reach them;
* the compressor: its static curve and its gain reduction over a test passage;
* controllers: knob → parameter maps (static-conditional), trajectories over time (dynamic).

Each function takes a block (or the chain), a :class:`KnobSweeps` and the report folder, writes one
PNG and returns a :class:`~nablafx.plotting.common.Figure` whose ``data`` holds the curves drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nablafx.dsp.compressor import compressor, gain_computer
from nablafx.dsp.gain import amplitude_to_db
from nablafx.plotting.common import Figure, db, plt, save, settings_colors
from nablafx.processors.compressor import Compressor
from nablafx.processors.eq import BiquadCascade
from nablafx.processors.fir import StaticFIR
from nablafx.processors.nonlinear import StaticNonlinearity
from nablafx.processors.tonestack import ToneStack

N_FFT = 8192


@dataclass
class KnobSweeps:
    """Knob vectors for the views: one sweep per knob (that knob over ``values``, the others at
    ``centre``).  A chain without knob inputs has one sweep named ``""`` holding one empty vector."""

    letters: list[str]
    centre: np.ndarray  # (K,)
    values: np.ndarray  # (V,) positions in [0, 1]

    @classmethod
    def make(cls, letters, centre, points: int) -> KnobSweeps:
        return cls(list(letters), np.asarray(centre, dtype=np.float64), np.linspace(0.0, 1.0, max(2, points)))

    def sweeps(self, uses_knobs: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``[(letter, values (V,), knobs (V, K))]``; ``[("", [nan], (1, 0))]`` when knobs are unused."""
        if not uses_knobs or not self.letters:
            return [("", np.array([np.nan]), np.zeros((1, 0)))]
        out = []
        for j, letter in enumerate(self.letters):
            knobs = np.repeat(self.centre[None], len(self.values), axis=0)
            knobs[:, j] = self.values
            out.append((letter, self.values, knobs))
        return out


@torch.no_grad()
def _static_params(ctrl, knobs: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    """Normalised parameters ``(V, P)`` of a static / static-cond controller for knob rows ``(V, K)``."""
    n = max(1, knobs.shape[0])
    x = torch.zeros(n, 1, 1, dtype=dtype)
    k = torch.as_tensor(knobs, dtype=dtype) if ctrl.uses_knobs else None
    params, _ = ctrl(x, k, None)
    return params[..., 0]


def _sweep_label(letter: str, value: float) -> str:
    return "learned" if not letter else f"{letter} = {value:.2f}"


def _freqs(sr: int, n_fft: int = N_FFT) -> np.ndarray:
    return np.arange(n_fft // 2 + 1) * sr / n_fft


def filter_response(proc, params: torch.Tensor | None, n_fft: int = N_FFT) -> np.ndarray:
    """Complex response ``(V, n_fft//2+1)`` of a filter block for normalised parameters ``(V, P)``."""
    with torch.no_grad():
        if isinstance(proc, StaticFIR):
            h = proc.frequency_response(n_fft).reshape(1, -1)
        else:
            h = proc.frequency_response(params.to(torch.float64), n_fft)
    return h.detach().cpu().numpy().astype(np.complex128)


@torch.no_grad()
def filter_figure(index: int, proc, ctrl, sweeps: KnobSweeps, out_dir, sample_rate: int) -> Figure:
    """Magnitude (dB) and phase (degrees) of a filter block, one column per knob sweep."""
    groups = sweeps.sweeps(ctrl.uses_knobs) if proc.n_params else [("", np.array([np.nan]), np.zeros((1, 0)))]
    f = _freqs(sample_rate)
    pyplot = plt()
    fig, axes = pyplot.subplots(2, len(groups), figsize=(4.2 * len(groups) + 1, 5.6), squeeze=False, sharex=True)
    data = {"freqs_hz": f, "sweeps": {}}
    for col, (letter, values, knobs) in enumerate(groups):
        params = _static_params(ctrl, knobs) if proc.n_params else None
        h = filter_response(proc, params)
        data["sweeps"][letter] = {"values": values, "response": h}
        colors = settings_colors(len(values))
        for v, (hv, c) in enumerate(zip(h, colors)):
            label = _sweep_label(letter, values[v])
            axes[0, col].semilogx(f[1:], db(hv[1:]), color=c, label=label)
            axes[1, col].semilogx(f[1:], np.degrees(np.angle(hv[1:])), color=c)
        axes[0, col].set(title=f"knob {letter} swept" if letter else "learned response", ylabel="magnitude (dB)")
        axes[1, col].set(xlabel="frequency (Hz)", ylabel="phase (°)", xlim=(20, sample_rate / 2), ylim=(-185, 185))
        axes[0, col].legend(fontsize=7, loc="best")
        for ax in axes[:, col]:
            ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"block {index}: {proc.type_name}")
    fig.tight_layout()
    rel = save(fig, out_dir, f"gb_{index:02d}_{proc.type_name}_response.png")
    knob_text = ("Each column moves one knob from 0 to 1 (colour: dark → light) with the others at their "
                 "middle test setting." if ctrl.uses_knobs else "The controller is static: one learned curve.")
    return Figure(rel, f"Block {index}: {proc.type_name} frequency response",
                  f"Magnitude (top, dB) and phase (bottom, degrees) of the {proc.type_name} block as learned, "
                  f"computed from its coefficients. {knob_text} 0 dB means the block leaves that frequency "
                  "unchanged; a bump is a boost, a dip a cut.", data)


@torch.no_grad()
def nonlinearity_figure(index: int, proc, ctrl, sweeps: KnobSweeps, out_dir, block_input: torch.Tensor | None) -> Figure:
    """Transfer curve(s) of a static nonlinearity over the range of values that reach it."""
    peak = float(block_input.abs().max()) if block_input is not None and block_input.numel() else 1.0
    lim = max(1.0, 1.1 * peak)
    x = torch.linspace(-lim, lim, 801)
    groups = sweeps.sweeps(ctrl.uses_knobs) if proc.n_params else [("", np.array([np.nan]), np.zeros((1, 0)))]
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(groups), figsize=(4.2 * len(groups) + 1, 3.8), squeeze=False)
    data = {"x": x.numpy(), "sweeps": {}}
    for col, (letter, values, knobs) in enumerate(groups):
        ax = axes[0, col]
        params = _static_params(ctrl, knobs) if proc.n_params else [None] * len(values)
        curves = []
        with torch.no_grad():
            for v, c in enumerate(settings_colors(len(values))):
                p = params[v: v + 1] if proc.n_params else None
                y = proc.transfer_curve(x, p).numpy()
                curves.append(y)
                ax.plot(x.numpy(), y, color=c, label=_sweep_label(letter, values[v]))
        data["sweeps"][letter] = {"values": values, "curves": np.array(curves)}
        ax.plot(x.numpy(), x.numpy(), color="0.6", lw=0.8, ls=":", label="identity")
        if block_input is not None and block_input.numel():
            ax2 = ax.twinx()
            ax2.hist(block_input.reshape(-1).numpy(), bins=120, range=(-lim, lim), color="0.85", zorder=0)
            ax2.set_yticks([])
            ax.set_zorder(ax2.get_zorder() + 1)
            ax.patch.set_visible(False)
        ax.set(xlabel="input", ylabel="output", title=f"knob {letter} swept" if letter else "learned curve")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(f"block {index}: {proc.type_name}")
    fig.tight_layout()
    rel = save(fig, out_dir, f"gb_{index:02d}_{proc.type_name}_curve.png")
    return Figure(rel, f"Block {index}: {proc.type_name} transfer curve",
                  f"Output of the {proc.type_name} nonlinearity against its input (memoryless, before "
                  "oversampling filters). The dotted diagonal is a wire; flattening toward the edges is "
                  "clipping, an asymmetric curve adds even harmonics. The grey histogram is how often each "
                  "input value reaches the block on the test excerpt at the middle knob setting, so only "
                  "the curve above the grey area matters." , data)


def compressor_static_curve(proc: Compressor, params: torch.Tensor, levels_db: np.ndarray) -> np.ndarray:
    """Measured steady-state output level (dB) of the compressor block for constant inputs at
    ``levels_db``, one row per parameter row ``(V, P)`` → ``(V, L)``.  Each level is held for 30
    attack time constants (the one-pole detector is then within e^−30 of its final value) and the
    last sample is read."""
    out = np.zeros((params.shape[0], len(levels_db)))
    with torch.no_grad():
        for v in range(params.shape[0]):
            p = params[v: v + 1].to(torch.float64).unsqueeze(-1)  # (1, P, 1)
            real = proc.denormalise(p)
            n = int(max(64, 30 * float(real["attack_ms"]) * proc.sample_rate / 1000))
            amp = torch.as_tensor(10 ** (np.asarray(levels_db) / 20), dtype=torch.float64)
            x = amp.reshape(-1, 1, 1).expand(-1, 1, n).contiguous()
            y, _, _ = compressor(x, proc.sample_rate, real["threshold_db"], real["ratio"], real["attack_ms"][:, 0, 0],
                                 real["release_ms"][:, 0, 0], real["knee_db"], real["makeup_db"])
            out[v] = amplitude_to_db(y[:, 0, -1]).numpy()
    return out


@torch.no_grad()
def compressor_figure(index: int, proc: Compressor, ctrl, sweeps: KnobSweeps, out_dir, block_input: torch.Tensor,
                      sample_rate: int) -> Figure:
    """Static curve per knob sweep (measured on held levels; the formula dashed) and the gain
    reduction over the test excerpt at the middle setting."""
    levels = np.arange(-72.0, 1.0, 3.0)
    groups = sweeps.sweeps(ctrl.uses_knobs)
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(groups) + 1, figsize=(4.2 * (len(groups) + 1) + 1, 3.8), squeeze=False)
    data = {"levels_db": levels, "sweeps": {}}
    for col, (letter, values, knobs) in enumerate(groups):
        ax = axes[0, col]
        params = _static_params(ctrl, knobs)
        measured = compressor_static_curve(proc, params, levels)
        formula = []
        for v, c in enumerate(settings_colors(len(values))):
            real = proc.denormalise(params[v: v + 1].to(torch.float64).unsqueeze(-1))
            g = gain_computer(torch.as_tensor(levels, dtype=torch.float64), real["threshold_db"][0, 0, 0],
                              real["ratio"][0, 0, 0], real["knee_db"][0, 0, 0]) + real["makeup_db"][0, 0, 0]
            formula.append(g.numpy())
            ax.plot(levels, measured[v], color=c, label=_sweep_label(letter, values[v]))
            ax.plot(levels, formula[-1], color=c, ls="--", lw=0.8)
        data["sweeps"][letter] = {"values": values, "measured_db": measured, "formula_db": np.array(formula)}
        ax.plot(levels, levels, color="0.6", ls=":", lw=0.8)
        ax.set(xlabel="input level (dBFS)", ylabel="output level (dBFS)",
               title=f"static curve, knob {letter} swept" if letter else "static curve")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    ax = axes[0, -1]
    mid = _static_params(ctrl, sweeps.centre[None] if ctrl.uses_knobs else np.zeros((1, 0)))
    real = proc.denormalise(mid.unsqueeze(-1).to(block_input.dtype))
    with torch.no_grad():
        _, _, red = compressor(block_input[:1], sample_rate, real["threshold_db"], real["ratio"],
                               real["attack_ms"][:, 0, 0], real["release_ms"][:, 0, 0], real["knee_db"],
                               real["makeup_db"])
    t = np.arange(block_input.shape[-1]) / sample_rate
    ax.plot(t, db(block_input[0, 0].numpy()), color="0.8", lw=0.5, label="input level (dB)")
    ax.plot(t, -red[0, 0].numpy(), color="C3", label="gain change (−reduction, dB)")
    ax.set(xlabel="time (s)", ylabel="dB", ylim=(-80, 6), title="gain reduction on the test excerpt")
    ax.legend(fontsize=7, loc="lower right")
    data["reduction_db"] = red[0, 0].numpy()
    fig.suptitle(f"block {index}: compressor")
    fig.tight_layout()
    rel = save(fig, out_dir, f"gb_{index:02d}_compressor.png")
    return Figure(rel, f"Block {index}: compressor",
                  "Left: the compressor's static curve, output level against a held input level, measured by "
                  "running the block (solid) and from its gain-computer formula (dashed; they coincide when the "
                  "detector has settled). Above the threshold the slope is 1/ratio; the dotted diagonal is no "
                  "compression. Right: the gain the block applies over the test excerpt (red, 0 dB = untouched) "
                  "against the input level (grey); attack and release show as the speed of the dips and "
                  "recoveries.", data)


@torch.no_grad()
def controller_map_figure(model, sweeps: KnobSweeps, out_dir) -> Figure | None:
    """Knob → parameter map of every static-conditional controller (real units, one knob moved)."""
    blocks = [(i, p, c) for i, (p, c) in enumerate(zip(model.processors, model.controllers))
              if c.uses_knobs and not c.time_varying and p.n_params]
    if not blocks or not sweeps.letters:
        return None
    groups = sweeps.sweeps(True)
    pyplot = plt()
    fig, axes = pyplot.subplots(len(blocks), len(groups), figsize=(4.0 * len(groups) + 4.5, 2.6 * len(blocks)),
                                squeeze=False)
    data = {}
    for row, (i, proc, ctrl) in enumerate(blocks):
        for col, (letter, values, knobs) in enumerate(groups):
            ax = axes[row, col]
            params = _static_params(ctrl, knobs).unsqueeze(-1)
            real = {k: v[:, 0, 0].detach().numpy() for k, v in proc.denormalise(params).items()}
            data[(i, letter)] = real
            for name, vals in real.items():
                rng = proc.param_ranges[name]
                pos = np.array([rng.normalise(float(v)) for v in vals])
                ax.plot(values, pos, marker="o", ms=3, label=f"{name} {vals[0]:.3g}→{vals[-1]:.3g} {rng.unit}")
            ax.set(ylim=(-0.05, 1.05), xlabel=f"knob {letter}", ylabel="position in range")
            ax.set_title(f"block {i}: {proc.type_name}", fontsize=9)
            ax.grid(True, alpha=0.3)
            if col == len(groups) - 1:  # real values at knob 0 → 1 of this column's knob, beside the row
                ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0), ncol=1 if len(real) < 9 else 2)
    fig.tight_layout()
    rel = save(fig, out_dir, "gb_controllers.png")
    return Figure(rel, "Controllers: knob → parameter",
                  "How each conditional controller maps the knobs to its block's parameters: one row per block, "
                  "one column per knob (moved from 0 to 1, the others at their middle test setting). The y axis "
                  "is the position inside each parameter's allowed range (0 = its minimum, 1 = its maximum); the "
                  "legend beside each row gives the real values at knob 0 and knob 1 of the last column's knob. "
                  "A flat line: the knob does not act on that parameter.", data)


@torch.no_grad()
def trajectory_figure(model, trace: list[dict], out_dir, sample_rate: int) -> Figure | None:
    """Parameters of time-varying (dynamic) controllers over the test excerpt, in real units."""
    blocks = [(i, p, c) for i, (p, c) in enumerate(zip(model.processors, model.controllers)) if c.time_varying]
    if not blocks:
        return None
    pyplot = plt()
    fig, axes = pyplot.subplots(len(blocks), 1, figsize=(11, 2.8 * len(blocks)), squeeze=False)
    data = {}
    for row, (i, proc, _) in enumerate(blocks):
        ax = axes[row, 0]
        x = trace[i]["input"][0, 0].numpy()
        t = np.arange(len(x)) / sample_rate
        real = {k: v[0, 0].numpy() for k, v in proc.denormalise(trace[i]["params"][:1]).items()}
        data[i] = real
        ax2 = ax.twinx()
        ax2.plot(t, db(x), color="0.85", lw=0.5)
        ax2.set_ylabel("input level (dB)", color="0.5")
        ax2.set_ylim(-80, 6)
        ax.set_zorder(ax2.get_zorder() + 1)
        ax.patch.set_visible(False)
        for name, v in real.items():
            ax.plot(t, v, label=f"{name} ({proc.param_ranges[name].unit or 'value'})")
        ax.set(xlabel="time (s)", title=f"block {i}: {proc.type_name} (dynamic controller)")
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    rel = save(fig, out_dir, "gb_trajectories.png")
    return Figure(rel, "Controllers: trajectories over time",
                  "The parameters a dynamic controller sets while the test excerpt plays (middle knob setting), "
                  "in real units, over the level of the signal entering the block (grey, right axis). A gain "
                  "that dips when the level rises is compression; its speed is the attack and release.", data)


@torch.no_grad()
def graybox_figures(model, sweeps: KnobSweeps, excerpt: torch.Tensor, out_dir: str | Path) -> list[Figure]:
    """Every gray-box view of ``model`` for the dry ``excerpt (n,)`` (traced at the middle setting)."""
    sr = model.sample_rate
    knobs = torch.as_tensor(sweeps.centre[None], dtype=torch.float32) if model.n_knobs else None
    trace = model.trace(excerpt.reshape(1, 1, -1).float(), knobs)
    figures = []
    for i, (proc, ctrl) in enumerate(zip(model.processors, model.controllers)):
        if ctrl.time_varying:
            continue  # drawn by trajectory_figure
        if isinstance(proc, (BiquadCascade, ToneStack, StaticFIR)):
            figures.append(filter_figure(i, proc, ctrl, sweeps, out_dir, sr))
        elif isinstance(proc, StaticNonlinearity):
            figures.append(nonlinearity_figure(i, proc, ctrl, sweeps, out_dir, trace[i]["input"]))
        elif isinstance(proc, Compressor):
            figures.append(compressor_figure(i, proc, ctrl, sweeps, out_dir, trace[i]["input"], sr))
    for fig in (controller_map_figure(model, sweeps, out_dir), trajectory_figure(model, trace, out_dir, sr)):
        if fig is not None:
            figures.append(fig)
    return figures


def control_table(model, settings: list[tuple[str, np.ndarray]]) -> tuple[list[str], list[list[str]]]:
    """Rows ``[block, parameter, value per setting…]`` of every static / static-cond parameter."""
    values = [model.control_values(torch.as_tensor(k, dtype=torch.float32) if model.n_knobs else None)
              for _, k in settings]
    header = ["block", "parameter"] + [label for label, _ in settings]
    rows = []
    for i, proc in enumerate(model.processors):
        for name in values[0][i]:
            unit = proc.param_ranges[name].unit
            rows.append([f"{i}: {proc.type_name}", f"{name}" + (f" ({unit})" if unit else "")]
                        + [f"{v[i][name]:.4g}" for v in values])
    return header, rows
