"""Option errors are ConfigError naming the full key path (params.yaml or a saved model's
config.yaml); anything else a builder raises — a TypeError from a bug included — is not a config
error and keeps its traceback."""

from __future__ import annotations

import pickle

import pytest
import yaml

from nablafx import registry
from nablafx.errors import ConfigError


def _family(monkeypatch, builder):
    monkeypatch.setitem(registry._FAMILIES, "fake", builder)


def test_option_error_from_a_builder_names_the_full_key(monkeypatch):
    def fake(n_knobs=0, sample_rate=48000, width=1):
        raise ConfigError("must be even, got 3", key="width")

    _family(monkeypatch, fake)
    with pytest.raises(ConfigError, match=r"^params\.yaml: variants\.v\.width: must be even, got 3$"):
        registry.build_model({"family": "fake", "width": 3}, n_knobs=0, key="variants.v")


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), ValueError("math domain error"), KeyError("k")])
def test_a_bug_in_a_builder_is_not_a_config_error(monkeypatch, exc):
    def fake(n_knobs=0, sample_rate=48000, width=1):
        raise exc

    _family(monkeypatch, fake)
    with pytest.raises(type(exc)) as err:
        registry.build_model({"family": "fake", "width": 3}, n_knobs=0, key="variants.v")
    assert not isinstance(err.value, ConfigError)
    assert err.traceback[-1].name == "fake"  # the traceback still reaches the faulty line


def test_a_real_type_error_in_a_model_propagates(monkeypatch):
    """A TypeError raised inside a real builder (here: a bad argument in code, not in params) keeps
    its type; only option names are checked against the signature up front."""
    import nablafx.models.tcn as tcn_module

    def broken(*args, **kwargs):
        raise TypeError("CausalConv1d.__init__() got an unexpected keyword argument 'dilatoin'")

    monkeypatch.setattr(tcn_module, "CausalConv1d", broken)
    with pytest.raises(TypeError, match="dilatoin"):
        registry.build_model({"family": "tcn", "channels": 4, "blocks": 2, "cond": "none"}, n_knobs=0)


def test_missing_required_option_is_a_config_error(monkeypatch):
    def fake(n_knobs, sample_rate, width):
        return None

    _family(monkeypatch, fake)
    with pytest.raises(ConfigError, match=r"^params\.yaml: variants\.v\.width: missing; required by family 'fake'"):
        registry.build_model({"family": "fake"}, n_knobs=0, key="variants.v")


def test_processor_and_controller_option_errors_nest_their_keys():
    spec = {"family": "graybox", "processors": [
        {"type": "gain"}, {"type": "gain", "controller": {"type": "dynamic", "hop": 0}}]}
    with pytest.raises(ConfigError, match=r"^params\.yaml: variants\.g\.processors\[1\]\.controller: hop, hidden and "
                                          r"num_layers must be ≥ 1"):
        registry.build_model(spec, n_knobs=0, key="variants.g")
    spec = {"family": "graybox", "processors": [{"type": "gain", "ranges": {"gain_db": [6, -6]}}]}
    with pytest.raises(ConfigError, match=r"^params\.yaml: variants\.g\.processors\[0\]\.ranges\.gain_db: range max"):
        registry.build_model(spec, n_knobs=0, key="variants.g")


def test_saved_model_errors_name_its_config_file(tmp_path):
    from nablafx.export import load_model, save_model

    model = registry.build_model({"family": "tcn", "channels": 4, "blocks": 1, "kernel_size": 3,
                                  "dilation_growth": 2, "cond": "none"}, n_knobs=0)
    save_model(model, tmp_path)
    config = yaml.safe_load((tmp_path / "config.yaml").read_text())
    config["spec"]["chanels"] = config["spec"].pop("channels")  # a typo in a saved model's spec
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match=rf"^{tmp_path / 'config.yaml'}: spec\.chanels: unknown option"):
        load_model(tmp_path)


def test_config_error_pickles_with_its_fields():
    err = pickle.loads(pickle.dumps(ConfigError("bad", key="train.lr", file="params.yaml")))
    assert (str(err), err.key, err.problem) == ("params.yaml: train.lr: bad", "train.lr", "bad")
    assert str(ConfigError("bad", key="[2]").under("processors")) == "params.yaml: processors[2]: bad"
