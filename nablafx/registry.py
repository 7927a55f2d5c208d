"""Name → builder, in one place.

Model families register a builder with :func:`register`; params.yaml names *variants*
(a family plus its keyword arguments) and *aliases* (bare names such as ``tcn``).
Unknown names fail with the list of known ones.  Option errors are :class:`ConfigError` naming the
params.yaml key; an exception of any other type from a builder is a bug and propagates as it is.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable

from torch import nn

from nablafx.errors import PARAMS_FILE, ConfigError, required_options

_FAMILIES: dict[str, Callable[..., nn.Module]] = {}
_FAMILY_MODULES = ("nablafx.models",)


# keys of a variant spec that configure training, not the model (read by nablafx.training.train):
# they override train.<key> for that variant (the papers train S4 faster, the LSTMs with TBPTT)
TRAINING_KEYS = ("lr", "tbptt_samples")
# top-level params.yaml keys read here (the other sections: nablafx.config.SECTIONS)
PARAMS_KEYS = ("model", "aliases", "variants")

__all__ = ["ConfigError", "PARAMS_KEYS", "TRAINING_KEYS", "build_model", "families", "register", "resolve_variant"]


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
        raise ConfigError("expected a non-empty mapping of variant name → spec", "variants", PARAMS_FILE)
    if "aliases" not in params:
        raise ConfigError("missing; expected a mapping of bare name → variant name ({} for none)", "aliases",
                          PARAMS_FILE)
    aliases = params["aliases"]
    if not isinstance(aliases, dict):
        raise ConfigError(f"expected a mapping of bare name → variant name, got {aliases!r}", "aliases", PARAMS_FILE)
    for alias, target in aliases.items():
        if target not in variants:
            raise ConfigError(f"unknown variant {target!r}; known: {', '.join(sorted(variants))}",
                              f"aliases.{alias}", PARAMS_FILE)
    if name is None:
        name = params.get("model")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"expected a variant name, got {name!r}", "model", PARAMS_FILE)
    canonical = aliases.get(name, name)
    if canonical not in variants:
        known = sorted(set(variants) | set(aliases))
        raise ConfigError(f"unknown variant {name!r}; known: {', '.join(known)}", "model", PARAMS_FILE)
    spec = variants[canonical]
    if not isinstance(spec, dict) or "family" not in spec:
        raise ConfigError("expected a mapping with a 'family' key", f"variants.{canonical}", PARAMS_FILE)
    return canonical, dict(spec)


def build_model(spec: dict, *, n_knobs: int, sample_rate: int = 48000, key: str = "model",
                file: str | None = PARAMS_FILE) -> nn.Module:
    """Build a model from a variant spec ``{family: ..., **kwargs}``.

    ``key`` is the key path of ``spec`` in ``file`` (params.yaml; a saved model's config.yaml),
    used in error messages.  Only :class:`ConfigError` (unknown or missing option, a value the
    family refuses) is reported as a config problem; any other exception is a bug and propagates.
    """
    spec = {k: v for k, v in spec.items() if k not in TRAINING_KEYS}
    family = spec.pop("family", None)
    fams = families()
    if family not in fams:
        raise ConfigError(f"unknown family {family!r}; known: {', '.join(sorted(fams))}", f"{key}.family", file)
    builder = fams[family]
    sig = inspect.signature(builder)
    accepts_var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if not accepts_var_kw:
        unknown = sorted(set(spec) - set(sig.parameters))
        if unknown:
            allowed = sorted(k for k in sig.parameters if k not in ("n_knobs", "sample_rate"))
            raise ConfigError(f"unknown option for family {family!r}; allowed: {', '.join(allowed)}",
                              f"{key}.{unknown[0]}", file)
    for name in required_options(builder, skip=("n_knobs", "sample_rate")):
        if name not in spec:
            raise ConfigError(f"missing; required by family {family!r}", f"{key}.{name}", file)
    try:
        model = builder(n_knobs=n_knobs, sample_rate=sample_rate, **spec)
    except ConfigError as err:
        raise err.under(key, file) from err
    model._nablafx_spec = {"family": family, **spec}
    return model
