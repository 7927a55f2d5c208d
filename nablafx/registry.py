"""Name → builder, in one place.

Model families register a builder with :func:`register`; params.yaml names *variants*
(a family plus its keyword arguments) and *aliases* (bare names such as ``tcn``).
Unknown names fail with the list of known ones.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

_FAMILIES: dict[str, Callable[..., nn.Module]] = {}
_FAMILY_MODULES = ("nablafx.models",)


# keys of a variant spec that configure training, not the model (read by nablafx.training.train)
TRAINING_KEYS = ("lr",)


class ConfigError(ValueError):
    """A params.yaml value is malformed or names something unknown; the message names the key."""


def register(name: str):
    """Class/function decorator registering a model family builder under ``name``."""

    def deco(builder):
        if name in _FAMILIES and _FAMILIES[name] is not builder:
            raise RuntimeError(f"model family {name!r} registered twice")
        _FAMILIES[name] = builder
        return builder

    return deco


def families() -> dict[str, Callable[..., nn.Module]]:
    for mod in _FAMILY_MODULES:
        importlib.import_module(mod)
    return dict(_FAMILIES)


def resolve_variant(params: dict, name: str | None = None) -> tuple[str, dict]:
    """Return ``(variant_name, spec)`` for ``name`` (default ``params['model']``), following aliases."""
    variants = params.get("variants")
    if not isinstance(variants, dict) or not variants:
        raise ConfigError("params.yaml: 'variants' must be a non-empty mapping of variant name → spec")
    aliases = params.get("aliases") or {}
    if not isinstance(aliases, dict):
        raise ConfigError("params.yaml: 'aliases' must be a mapping of bare name → variant name")
    if name is None:
        name = params.get("model")
    if not isinstance(name, str) or not name:
        raise ConfigError("params.yaml: 'model' must name a variant")
    canonical = aliases.get(name, name)
    if canonical not in variants:
        known = sorted(set(variants) | set(aliases))
        raise ConfigError(f"params.yaml: model: unknown variant {name!r}; known: {', '.join(known)}")
    spec = variants[canonical]
    if not isinstance(spec, dict) or "family" not in spec:
        raise ConfigError(f"params.yaml: variants.{canonical}: must be a mapping with a 'family' key")
    return canonical, dict(spec)


def build_model(spec: dict, *, n_knobs: int, sample_rate: int = 48000, key: str = "model") -> nn.Module:
    """Build a model from a variant spec ``{family: ..., **kwargs}``.

    ``key`` is the params.yaml key path used in error messages.
    """
    spec = {k: v for k, v in spec.items() if k not in TRAINING_KEYS}
    family = spec.pop("family", None)
    fams = families()
    if family not in fams:
        raise ConfigError(f"{key}.family: unknown family {family!r}; known: {', '.join(sorted(fams))}")
    builder = fams[family]
    sig = inspect.signature(builder)
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var_kw:
        unknown = sorted(set(spec) - set(sig.parameters))
        if unknown:
            allowed = sorted(k for k in sig.parameters if k not in ("n_knobs", "sample_rate"))
            raise ConfigError(f"{key}.{unknown[0]}: unknown option for family {family!r}; allowed: {', '.join(allowed)}")
    try:
        model = builder(n_knobs=n_knobs, sample_rate=sample_rate, **spec)
    except ConfigError:
        raise
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {err}") from err
    model._nablafx_spec = {"family": family, **spec}
    return model
