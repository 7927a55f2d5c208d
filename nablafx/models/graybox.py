"""Gray-box models: a chain of differentiable processors, each driven by a controller.

A params.yaml variant::

    gb-dist:
      family: graybox
      processors:
        - {type: gain, controller: static}
        - {type: peq, controller: static}
        - {type: mlp, oversample: 2, pretrain: {curve: tanh}}
        - {type: peq, controller: static}
        - {type: gain, controller: static}

``type`` is a processor (:data:`nablafx.processors.PROCESSORS`), the other keys its options;
``controller`` is a name or ``{type: ..., **options}`` (:data:`nablafx.controllers.CONTROLLERS`),
``static`` by default and ``none`` for processors without control parameters; ``pretrain`` is read by
the pretraining stage (:mod:`nablafx.pretraining`).  A dynamic controller drives the processor from
the signal entering it.

Streaming: the state is one ``(processor_state, controller_state)`` pair per processor — filter
histories, compressor envelopes, resampler histories, controller LSTM states and frame positions.
"""

from __future__ import annotations

import torch
from torch import nn

from nablafx.controllers import build_controller
from nablafx.errors import ConfigError
from nablafx.processors import build_processor
from nablafx.registry import register
from nablafx.streaming import StreamingModel


@register("graybox")
class GrayBoxModel(StreamingModel):
    def __init__(self, n_knobs: int = 0, sample_rate: int = 48000, processors: list | tuple = ()):
        super().__init__()
        if not isinstance(processors, (list, tuple)) or not processors:
            raise ConfigError("expected a non-empty list of processor specs", key="processors")
        self.sample_rate = sample_rate
        self.specs = [dict(s) if isinstance(s, dict) else s for s in processors]
        self.processors = nn.ModuleList()
        self.controllers = nn.ModuleList()
        for i, spec in enumerate(processors):
            key = f"processors[{i}]"
            proc = build_processor(spec, sample_rate, key)
            ctrl_spec = spec.get("controller", "static" if proc.n_params else "none")
            ctrl_type = ctrl_spec if isinstance(ctrl_spec, str) else (ctrl_spec or {}).get("type")
            if proc.n_params == 0 and ctrl_type != "none":
                raise ConfigError(f"processor {spec['type']!r} has no control parameters; "
                                  "use 'none' or leave the controller out", key=f"{key}.controller")
            if proc.n_params > 0 and ctrl_type == "none":
                raise ConfigError(f"processor {spec['type']!r} has {proc.n_params} control parameters and needs a "
                                  "controller (static, static-cond, dynamic, dynamic-cond)", key=f"{key}.controller")
            ctrl = build_controller(ctrl_spec, proc.n_params, n_knobs, proc.default_params(), key=f"{key}.controller")
            if ctrl.time_varying and not proc.supports_time_varying:
                raise ConfigError(f"processor {spec['type']!r} cannot follow time-varying parameters; "
                                  "use static or static-cond", key=f"{key}.controller")
            self.processors.append(proc)
            self.controllers.append(ctrl)
        self.n_knobs = n_knobs if any(c.uses_knobs for c in self.controllers) else 0

    # --- streaming protocol --------------------------------------------------------------------

    @property
    def receptive_field(self) -> int | None:
        total = 1
        for proc, ctrl in zip(self.processors, self.controllers):
            rf = proc.receptive_field
            if rf is None or ctrl.receptive_field is None:
                return None
            total += rf - 1
        return total

    @property
    def latency_samples(self) -> int:
        """Pure delay added by the chain (linear-phase oversampling), 0 for minimum phase."""
        return sum(getattr(p, "latency_samples", 0) for p in self.processors)

    def init_state(self, batch_size: int, device=None, dtype=None):
        dtype = dtype or torch.get_default_dtype()
        return [(p.init_state(batch_size, device, dtype), c.init_state(batch_size, device, dtype))
                for p, c in zip(self.processors, self.controllers)]

    def forward(self, x: torch.Tensor, knobs: torch.Tensor | None = None, state=None):
        knobs = self.check_knobs(x, knobs)
        if state is None:
            state = self.init_state(x.shape[0], x.device, x.dtype)
        new_state = []
        for proc, ctrl, (p_state, c_state) in zip(self.processors, self.controllers, state):
            params, c_state = ctrl(x, knobs, c_state)
            x, p_state = proc(x, params, p_state)
            new_state.append((p_state, c_state))
        return x, new_state

    # --- inspection (plots, reports) -----------------------------------------------------------

    @torch.no_grad()
    def trace(self, x: torch.Tensor, knobs: torch.Tensor | None = None) -> list[dict[str, torch.Tensor]]:
        """Run the chain offline and return, per processor, ``{"input", "params", "output"}``: the
        signal entering it ``(B, 1, n)``, its normalised parameters ``(B, P, 1 or n)`` (``None`` for
        a processor without parameters) and its output.  The last output equals ``forward``'s."""
        knobs = self.check_knobs(x, knobs)
        state = self.init_state(x.shape[0], x.device, x.dtype)
        out = []
        for proc, ctrl, (p_state, c_state) in zip(self.processors, self.controllers, state):
            params, _ = ctrl(x, knobs, c_state)
            y, _ = proc(x, params, p_state)
            out.append({"input": x, "params": params if proc.n_params else None, "output": y})
            x = y
        return out

    @torch.no_grad()
    def control_values(self, knobs: torch.Tensor | None = None) -> list[dict[str, float]]:
        """Real-unit parameters of every processor with a static / static-cond controller.

        ``knobs``: ``(n_knobs,)`` for conditional chains.  Time-varying processors are skipped
        (empty dict).
        """
        dev = next(self.parameters()).device
        x = torch.zeros(1, 1, 1, device=dev)
        k = None if knobs is None or self.n_knobs == 0 else torch.as_tensor(knobs, device=dev).reshape(1, -1)
        out = []
        for proc, ctrl in zip(self.processors, self.controllers):
            if ctrl.time_varying or proc.n_params == 0:
                out.append({})
                continue
            params, _ = ctrl(x, k, None)
            out.append({name: float(v.reshape(-1)[0]) for name, v in proc.denormalise(params).items()})
        return out
