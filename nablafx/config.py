"""params.yaml: one loader, one validator, one error type for every section.

Every value a stage reads lives in params.yaml, so ``dvc params diff`` / ``dvc exp show`` show it
and changing it reruns what depends on it.  A section is a dataclass **without defaults**
registered with :func:`section`; each field declares its rules next to it with :func:`setting`
(type from the annotation; ``choices``, ``gt``/``ge``, ``nonempty``).  :func:`read_section`
checks a params dict against it and raises :class:`~nablafx.errors.ConfigError` with one message
format, ``params.yaml: <key path>: <problem>``:

    params.yaml: train.precision: missing; expected one of auto, 32-true, 32, 16-mixed, bf16-mixed, 64-true
    params.yaml: train.bogus: unknown key; known: seed, accelerator, …
    params.yaml: train.lr: expected float, got 'fast'
    params.yaml: cost.frame_sizes[0]: must be > 0, got 0
    params.yaml: train.loss.l3: unknown loss term 'l3'; known: l1, mse, esr, dc, mrstft, melstft

Sections here: ``data``, ``train``, ``test``; ``recipe`` / ``recipes`` (named overrides of ``train``
keys, :func:`train_config`).  ``pretrain`` (:mod:`nablafx.pretraining`), ``fad``
(:mod:`nablafx.evaluation.fad`), ``cost`` (:mod:`nablafx.evaluation.cost`) and ``report``
(:mod:`nablafx.plotting.report`) are declared next to
the code that uses them with the same decorator; ``model`` / ``aliases`` / ``variants`` are read by
:mod:`nablafx.registry`.  :data:`SECTION_NAMES` lists every top-level key.

:func:`load_params` reads YAML numbers and booleans the YAML 1.2 way, as DVC does (``lr: 1e-3`` is a
float, ``yes`` is a string), so the code sees what ``dvc params diff`` shows.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from nablafx.errors import PARAMS_FILE, ConfigError

__all__ = [
    "RECIPE_KEYS", "SECTIONS", "SECTION_NAMES", "ConfigError", "DataConfig", "Rule", "TestConfig", "TrainConfig",
    "check_setting", "data_config", "load_params", "read_section", "recipe_overrides", "section", "setting",
    "test_config", "train_config",
]

# every top-level key of params.yaml: registry keys first, the training recipes, then the sections
SECTION_NAMES = ("model", "aliases", "variants", "recipe", "recipes", "data", "train", "test", "pretrain", "fad",
                 "cost", "report")
RECIPE_KEYS = ("recipe", "recipes")  # read with `train` by :func:`train_config`
SECTIONS: dict[str, type] = {}  # section name → dataclass, filled by @section


# --------------------------------------------------------------------------- declaring sections
@dataclass(frozen=True)
class Rule:
    """What a field accepts beyond its annotated type.  For a list the value rules apply to each
    item, for a mapping ``choices`` applies to its keys and ``gt``/``ge`` to its values."""

    choices: tuple | typing.Callable[[], tuple] | None = None  # a callable: looked up when checking
    what: str = "value"  # the noun in "unknown <what> 'x'; known: …"
    gt: float | None = None
    ge: float | None = None
    nonempty: bool = False
    lt: float | None = None

    def known(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices


def setting(*, choices=None, what: str = "value", gt: float | None = None, ge: float | None = None,
            nonempty: bool = False, lt: float | None = None) -> Any:
    """A section field with its rules and no default (a missing key is an error)."""
    return dataclasses.field(metadata={"nablafx": Rule(choices, what, gt, ge, nonempty, lt)})


def section(name: str):
    """Class decorator: register a dataclass as params.yaml section ``name``."""
    if name not in SECTION_NAMES:
        raise RuntimeError(f"section {name!r} is not in nablafx.config.SECTION_NAMES")

    def deco(cls):
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@section({name!r}) needs a dataclass (put it above @dataclass)")
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                raise TypeError(f"{cls.__qualname__}.{f.name}: a params field has no default (params.yaml holds it)")
        if name in SECTIONS and SECTIONS[name].__qualname__ != cls.__qualname__:
            raise RuntimeError(f"params section {name!r} declared twice ({SECTIONS[name].__qualname__})")
        cls.params_key = name
        SECTIONS[name] = cls
        return cls

    return deco


# --------------------------------------------------------------------------- checking values
_HINTS: dict[type, dict] = {}


def _hints(cls) -> dict:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _rule(f: dataclasses.Field) -> Rule:
    return f.metadata.get("nablafx", Rule())


def _optional(tp) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def describe(tp, rule: Rule = Rule()) -> str:
    """What a field expects, in words (used in 'missing' and type errors)."""
    optional, tp = _optional(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    known = rule.known()
    if origin is list:
        text = f"a {'non-empty ' if rule.nonempty else ''}list of {describe(args[0], Rule(known, rule.what))}"
    elif origin is dict:
        keys = f"{rule.what} ({', '.join(map(str, known))})" if known else "name"
        text = f"a {'non-empty ' if rule.nonempty else ''}mapping of {keys} → {describe(args[1])}"
    elif known and origin is None:
        text = f"one of {', '.join(map(str, known))}"
    else:
        text = {bool: "true or false", int: "int", float: "float", str: "str"}.get(tp, str(tp))
    return f"{text} or null" if optional else text


def _fail(problem: str, key: str):
    raise ConfigError(problem, key, PARAMS_FILE)


def _check_range(value, rule: Rule, key: str):
    if rule.gt is not None and not value > rule.gt:
        _fail(f"must be > {rule.gt:g}, got {value!r}", key)
    if rule.ge is not None and not value >= rule.ge:
        _fail(f"must be ≥ {rule.ge:g}, got {value!r}", key)
    if rule.lt is not None and not value < rule.lt:
        _fail(f"must be < {rule.lt:g}, got {value!r}", key)


def _check_choice(value, rule: Rule, key: str):
    known = rule.known()
    if known is not None and value not in known:
        _fail(f"unknown {rule.what} {value!r}; known: {', '.join(map(str, known))}", key)


def check_value(value, tp, rule: Rule, key: str):
    """``value`` checked against type ``tp`` and ``rule``; returns it normalised (int → float for a
    float field, tuple → list).  Raises ConfigError naming ``key``."""
    want = describe(tp, rule)
    optional, tp = _optional(tp)
    if value is None:
        if optional:
            return None
        _fail(f"expected {want}, got null", key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            _fail(f"expected {want}, got {value!r}", key)
        if rule.nonempty and not value:
            _fail(f"must not be empty; expected {want}", key)
        return [check_value(v, args[0], rule, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            _fail(f"expected {want}, got {value!r}", key)
        if rule.nonempty and not value:
            _fail(f"must not be empty; expected {want}", key)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                _fail(f"expected {want}; key {k!r} is not a name", key)
            _check_choice(k, rule, f"{key}.{k}")
            out[k] = check_value(v, args[1], Rule(gt=rule.gt, ge=rule.ge, lt=rule.lt), f"{key}.{k}")
        return out
    if tp is bool:
        if not isinstance(value, bool):
            _fail(f"expected {want}, got {value!r}", key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(f"expected {want}, got {value!r}", key)
    elif tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(f"expected {want}, got {value!r}", key)
        value = float(value)
        if not math.isfinite(value):
            _fail(f"must be finite, got {value!r}", key)
    elif tp is str:
        if not isinstance(value, str) or not value:
            _fail(f"expected {want}, got {value!r}", key)
    else:  # pragma: no cover - a declaration error, caught by tests/test_config.py
        raise TypeError(f"{key}: unsupported field type {tp!r} in a params section")
    _check_choice(value, rule, key)
    _check_range(value, rule, key)
    return value


def read_section(params: dict, cls):
    """The params.yaml section of ``cls`` (a :func:`section` dataclass), validated."""
    name = cls.params_key
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    raw = params.get(name) if isinstance(params, dict) else None
    if raw is None:
        _fail(f"missing; expected a mapping with keys {', '.join(names)}", name)
    if not isinstance(raw, dict):
        _fail(f"expected a mapping with keys {', '.join(names)}, got {type(raw).__name__}", name)
    for key in raw:
        if key not in names:
            _fail(f"unknown key; known: {', '.join(names)}", f"{name}.{key}")
    hints = _hints(cls)
    values = {}
    for f in fields:
        if f.name not in raw:
            _fail(f"missing; expected {describe(hints[f.name], _rule(f))}", f"{name}.{f.name}")
        values[f.name] = check_value(raw[f.name], hints[f.name], _rule(f), f"{name}.{f.name}")
    return cls(**values)


def check_setting(cls, name: str, value):
    """One field of a section checked by the same rules (e.g. a loss dict built in code)."""
    f = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    if f is None:
        raise KeyError(f"{cls.__qualname__} has no field {name!r}")
    return check_value(value, _hints(cls)[name], _rule(f), f"{cls.params_key}.{name}")


# --------------------------------------------------------------------------- reading the file
# The YAML 1.2 resolvers of ruamel.yaml, the parser DVC reads params.yaml with (``YAML(typ="safe")``),
# so that the code sees the value ``dvc params diff`` shows.
_YAML12_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_YAML12_FLOAT = re.compile(r"""^(?:
     [-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""", re.X)
_YAML12_INT = re.compile(r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0o?[0-7_]+
    |[-+]?[0-9_]+
    |[-+]?0x[0-9a-fA-F_]+)$""", re.X)
_REPLACED = {"tag:yaml.org,2002:bool", "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"}


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's SafeLoader with YAML 1.2 booleans, integers and floats (PyYAML follows YAML 1.1):
    ``1e-3`` and ``5E-3`` are floats, ``yes``/``on`` are strings, ``017`` is 17 — as DVC reads them."""


Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _REPLACED]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _YAML12_BOOL, list("tTfF"))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:float", _YAML12_FLOAT, list("-+0123456789."))
Yaml12Loader.add_implicit_resolver("tag:yaml.org,2002:int", _YAML12_INT, list("-+0123456789"))


def _construct_int(loader, node) -> int:
    text = loader.construct_scalar(node).replace("_", "")
    sign = -1 if text[0] == "-" else 1
    text = text.lstrip("+-")
    for prefix, base in (("0b", 2), ("0o", 8), ("0x", 16)):
        if text.startswith(prefix):
            return sign * int(text[2:], base)
    return sign * int(text, 10)  # YAML 1.2: a leading zero is still decimal


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def load_params(path: str | Path = PARAMS_FILE) -> dict:
    """Read params.yaml (YAML 1.2 scalars); its sections are checked by their readers."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found")
    try:
        params = yaml.load(path.read_text(), Loader=Yaml12Loader)  # a SafeLoader subclass
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: top level must be a mapping")
    return params


# --------------------------------------------------------------------------- data, train, test
def _loss_terms() -> tuple[str, ...]:
    from nablafx.metrics import LOSS_TERMS  # looked up when train.loss is checked: no torch import here

    return LOSS_TERMS


@section("data")
@dataclass
class DataConfig:
    root: str = setting()
    dry_dir: str = setting()
    device: str = setting()
    sample_rate: int = setting(gt=0)
    val_seconds: float = setting(ge=0)
    guard_seconds: float = setting(ge=0)
    max_latency_samples: int = setting(ge=0)


@section("train")
@dataclass
class TrainConfig:
    seed: int = setting()
    accelerator: str = setting(choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: int = setting(gt=0)
    num_nodes: int = setting(gt=0)
    strategy: str = setting()
    precision: str = setting(choices=("auto", "32-true", "32", "16-mixed", "bf16-mixed", "64-true"))
    max_steps: int = setting(gt=0)
    batch_size: int = setting(gt=0)
    chunk_seconds: float = setting(gt=0)
    context_samples: int = setting(ge=-1)  # -1: receptive field − 1 (bounded models) or 2048 (recurrent)
    val_every_n_steps: int = setting(gt=0)  # also the epoch length: checkpoints (best, last) at every epoch end
    tbptt_samples: int = setting(ge=0)  # > 0: truncated back-propagation through time in segments of this many samples
    resume: str = setting(choices=("auto", "require", "off"))
    lr: float = setting(gt=0)
    weight_decay: float = setting(ge=0)
    grad_clip: float = setting(ge=0)
    grad_clip_algorithm: str = setting(choices=("norm", "value"))  # the gradients' global norm, or each element
    lr_schedule: str = setting(choices=("cosine", "plateau"))  # warm-up + cosine per step; or ReduceLROnPlateau
    lr_plateau_factor: float = setting(gt=0, lt=1)  # plateau: LR × factor after `patience` validations without
    lr_plateau_patience: int = setting(ge=0)  # improvement of val/loss
    num_workers: int = setting(ge=0)
    pre_emphasis: float = setting(ge=0)
    loss_floor_db: float = setting()  # ESR/DC energy floor, dB relative to the training targets' mean power
    align_polarity: str = setting(choices=("off", "start", "guard"))  # read-out negated when the output anti-correlates
    loss: dict[str, float] = setting(choices=_loss_terms, what="loss term", ge=0, nonempty=True)


@section("test")
@dataclass
class TestConfig:
    __test__ = False  # not a pytest test class

    block_seconds: float = setting(ge=0)


def data_config(params: dict) -> DataConfig:
    return read_section(params, DataConfig)


def recipe_overrides(params: dict) -> tuple[str, dict]:
    """``(name, overrides)`` of the recipe params.yaml ``recipe:`` selects from ``recipes:``.

    A recipe is a mapping of ``train`` keys to values (``{}`` or null: ``train`` as written); every
    recipe is checked, selected or not, with its own key path (``recipes.paper.lr``).
    """
    recipes = params.get("recipes")
    if recipes is None:
        _fail("missing; expected a mapping of recipe name → train keys ({} for train: as written)", "recipes")
    if not isinstance(recipes, dict) or not recipes:
        _fail(f"expected a non-empty mapping of recipe name → train keys, got {recipes!r}", "recipes")
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    hints = _hints(TrainConfig)
    checked = {}
    for name, recipe in recipes.items():
        if recipe is None:
            recipe = {}
        if not isinstance(recipe, dict):
            _fail(f"expected a mapping of train keys, got {recipe!r}", f"recipes.{name}")
        for key in recipe:
            if key not in fields:
                _fail(f"unknown train key; known: {', '.join(fields)}", f"recipes.{name}.{key}")
        checked[name] = {k: check_value(v, hints[k], _rule(fields[k]), f"recipes.{name}.{k}") for k, v in recipe.items()}
    name = params.get("recipe")
    if not isinstance(name, str) or name not in checked:
        what = "missing" if "recipe" not in params else f"unknown recipe {name!r}"
        _fail(f"{what}; known: {', '.join(sorted(checked))}", "recipe")
    return name, checked[name]


def train_config(params: dict) -> TrainConfig:
    """params.yaml's ``train`` section with the selected recipe's keys laid over it (a recipe's
    ``loss`` replaces the whole loss mapping)."""
    name, overrides = recipe_overrides(params)
    if not overrides:
        return read_section(params, TrainConfig)
    train = params.get("train")
    if not isinstance(train, dict):
        return read_section(params, TrainConfig)  # reports the missing / malformed section
    return read_section({**params, "train": {**train, **overrides}}, TrainConfig)


def test_config(params: dict) -> TestConfig:
    return read_section(params, TestConfig)


test_config.__test__ = False  # not a pytest test
