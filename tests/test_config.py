"""The config layer: params.yaml holds every setting the code reads, one validator with one
message format for every section, YAML 1.2 numbers (as DVC reads them), and option errors that
never swallow a bug."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import nablafx
from nablafx import config, registry
from nablafx.config import SECTION_NAMES, SECTIONS, ConfigError, load_params, read_section, section

from .conftest import params_with

ROOT = Path(__file__).resolve().parents[1]


def _import_library() -> None:
    """Import every module of the library, so every @section dataclass is registered."""
    for mod in pkgutil.walk_packages(nablafx.__path__, "nablafx."):
        importlib.import_module(mod.name)


# ------------------------------------------------------------------------------- params.yaml ⇔ code
def test_every_section_field_is_in_params_yaml_and_every_key_is_known():
    _import_library()
    params = load_params(ROOT / "params.yaml")
    assert set(SECTIONS) == set(SECTION_NAMES) - set(registry.PARAMS_KEYS) - set(config.RECIPE_KEYS), (
        "a declared section has no dataclass")
    missing, unknown = [], []
    for name, cls in SECTIONS.items():
        section_params = params.get(name)
        assert isinstance(section_params, dict), f"params.yaml: {name}: section missing"
        fields = {f.name for f in dataclasses.fields(cls)}
        missing += [f"{name}.{k}" for k in sorted(fields - set(section_params))]
        unknown += [f"{name}.{k}" for k in sorted(set(section_params) - fields)]
        read_section(params, cls)  # and every value passes its rules
    unknown += [k for k in params if k not in SECTION_NAMES]
    missing += [k for k in SECTION_NAMES if k not in params]
    assert not missing, f"settings the code reads but params.yaml lacks: {missing}"
    assert not unknown, f"params.yaml keys no code reads: {unknown}"


def test_section_fields_have_no_defaults_and_supported_types():
    _import_library()
    for name, cls in SECTIONS.items():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            assert f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING, f"{name}.{f.name}"
            config.describe(hints[f.name])  # raises on nothing; the validator below covers each type


def test_section_with_a_default_is_refused_at_declaration():
    with pytest.raises(TypeError, match="has no default"):
        @section("test")
        @dataclass
        class Bad:
            block_seconds: float = 0.0


def test_every_params_variant_resolves():
    params = load_params(ROOT / "params.yaml")
    for name in list(params["variants"]) + list(params["aliases"]):
        registry.resolve_variant(params, name)


# ------------------------------------------------------------------------------- one message format
@pytest.mark.parametrize("change, message", [
    ({"train": {"precision": None}}, "params.yaml: train.precision: expected one of auto, 32-true"),
    ({"train": {"lr": "fast"}}, "params.yaml: train.lr: expected float, got 'fast'"),
    ({"train": {"lr": True}}, "params.yaml: train.lr: expected float, got True"),
    ({"train": {"lr": float("inf")}}, "params.yaml: train.lr: must be finite, got inf"),
    ({"train": {"max_steps": 2.5}}, "params.yaml: train.max_steps: expected int, got 2.5"),
    ({"train": {"max_steps": 0}}, "params.yaml: train.max_steps: must be > 0, got 0"),
    ({"train": {"num_workers": -1}}, "params.yaml: train.num_workers: must be ≥ 0, got -1"),
    ({"train": {"context_samples": -2}}, "params.yaml: train.context_samples: must be ≥ -1, got -2"),
    ({"train": {"resume": "always"}}, "params.yaml: train.resume: unknown value 'always'; known: auto, require, off"),
    ({"train": {"strategy": ""}}, "params.yaml: train.strategy: expected str, got ''"),
    ({"train": {"loss": {"l3": 1}}}, "params.yaml: train.loss.l3: unknown loss term 'l3'; known: l1, mse, esr"),
    ({"train": {"loss": {}}}, "params.yaml: train.loss: must not be empty"),
    ({"train": {"bogus": 1}}, "params.yaml: train.bogus: unknown key; known: seed, accelerator"),
    ({"data": {"sample_rate": "48k"}}, "params.yaml: data.sample_rate: expected int, got '48k'"),
    ({"test": {"block_seconds": -1}}, "params.yaml: test.block_seconds: must be ≥ 0, got -1.0"),
    ({"fad": {"embeddings": ["crepe_tiny", "vgish"]}},
     "params.yaml: fad.embeddings[1]: unknown embedding 'vgish'; known: crepe_tiny, crepe_full, vggish"),
    ({"fad": {"embeddings": []}}, "params.yaml: fad.embeddings: must not be empty"),
    ({"fad": {"embeddings": "crepe_tiny"}}, "params.yaml: fad.embeddings: expected a non-empty list of one of"),
    ({"fad": {"silence_db": "quiet"}}, "params.yaml: fad.silence_db: expected float or null, got 'quiet'"),
    ({"fad": {"dry_baseline": "yes"}}, "params.yaml: fad.dry_baseline: expected true or false, got 'yes'"),
    ({"cost": {"frame_sizes": [64, 0]}}, "params.yaml: cost.frame_sizes[1]: must be > 0, got 0"),
    ({"cost": {"repeats": 0}}, "params.yaml: cost.repeats: must be ≥ 1, got 0"),
    ({"pretrain": {"fir_lr": 0}}, "params.yaml: pretrain.fir_lr: must be > 0, got 0.0"),
    ({"fad": []}, "params.yaml: fad: expected a mapping with keys embeddings"),
])
def test_bad_values_one_format(change, message):
    _import_library()
    params = params_with(**change)
    name = next(iter(change))
    with pytest.raises(ConfigError) as err:
        read_section(params, SECTIONS[name])
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("name", ["data", "train", "test", "pretrain", "fad", "cost"])
def test_a_missing_key_is_an_error_not_a_default(name):
    _import_library()
    cls = SECTIONS[name]
    for f in dataclasses.fields(cls):
        params = params_with()
        del params[name][f.name]
        with pytest.raises(ConfigError, match=rf"^params\.yaml: {name}\.{f.name}: missing; expected "):
            read_section(params, cls)
    params = params_with()
    del params[name]
    with pytest.raises(ConfigError, match=rf"^params\.yaml: {name}: missing; expected a mapping with keys"):
        read_section(params, cls)


def test_values_are_normalised():
    _import_library()
    params = params_with(train={"lr": 1, "loss": {"l1": 1}}, fad={"silence_db": None, "hop_ms": 10})
    train = config.train_config(params)
    assert train.lr == 1.0 and isinstance(train.lr, float) and train.loss == {"l1": 1.0}
    fad = read_section(params, SECTIONS["fad"])
    assert fad.silence_db is None and fad.hop_ms == 10.0


def test_registry_keys_use_the_same_format():
    with pytest.raises(ConfigError, match=r"^params\.yaml: model: unknown variant 'nope'; known: "):
        registry.resolve_variant(params_with(model="nope"))
    with pytest.raises(ConfigError, match=r"^params\.yaml: aliases\.tcn: unknown variant 'tcn-99'"):
        registry.resolve_variant(params_with(aliases={"tcn": "tcn-99"}))
    params = params_with()
    del params["aliases"]
    with pytest.raises(ConfigError, match=r"^params\.yaml: aliases: missing"):
        registry.resolve_variant(params)


# ------------------------------------------------------------------------------- YAML 1.2 numbers
@pytest.mark.parametrize("text, value", [
    ("1e-3", 0.001), ("5E-3", 0.005), ("1.0e+2", 100.0), (".5", 0.5), ("-2e2", -200.0), ("1.", 1.0),
    ("017", 17), ("0x1F", 31), ("12", 12), ("true", True), ("False", False), ("~", None),
])
def test_yaml_numbers_read_as_yaml_1_2(tmp_path, text, value):
    path = tmp_path / "params.yaml"
    path.write_text(f"v: {text}\n")
    got = load_params(path)["v"]
    assert got == value and type(got) is type(value), (text, got)


@pytest.mark.parametrize("text", ["1e", "e5", "yes", "no", "on", "off", "1:20", "0x", "1e-3s", "32-true", "tRue"])
def test_strings_stay_strings(tmp_path, text):
    path = tmp_path / "params.yaml"
    path.write_text(f"v: {text}\n")
    assert load_params(path)["v"] == text


def test_yaml_scalars_agree_with_dvc_parser(tmp_path):
    """DVC reads params.yaml with ruamel.yaml (YAML 1.2): our loader gives the same values."""
    from ruamel.yaml import YAML

    texts = ["1e-3", "5E-3", "1.0e+2", ".5", "+.5", "-.5e-2", "1_000", "1_000.5", "0b101", "0o17", "017", "00",
             ".inf", "-.inf", "yes", "NO", "on", "True", "TRUE", "1:20", "0.5e", "2024-01-01", "abc", "null", ""]
    doc = "\n".join(f"k{i}: {t}" for i, t in enumerate(texts)) + "\n"
    path = tmp_path / "params.yaml"
    path.write_text(doc)
    ours, dvc = load_params(path), YAML(typ="safe").load(doc)
    for i, t in enumerate(texts):
        assert repr(ours[f"k{i}"]) == repr(dvc[f"k{i}"]), (t, ours[f"k{i}"], dvc[f"k{i}"])


def test_lr_typed_with_an_exponent_is_accepted(tmp_path):
    text = (ROOT / "params.yaml").read_text().replace("  lr: 0.005\n", "  lr: 5e-3\n", 1)
    assert "lr: 5e-3" in text
    (tmp_path / "params.yaml").write_text(text)
    assert config.train_config(load_params(tmp_path / "params.yaml")).lr == 0.005
    assert yaml.safe_load(text)["train"]["lr"] == "5e-3"  # what PyYAML alone (YAML 1.1) would have read
