"""Bad options fail at build time, naming the key and listing what is known."""

from __future__ import annotations

import pytest
import torch

from nablafx.registry import ConfigError, build_model


def test_unknown_family_lists_known():
    with pytest.raises(ConfigError, match=r"model\.family: unknown family 'wavenet'; known: .*lstm.*tcn"):
        build_model({"family": "wavenet"}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn", "gcn", "s4"])
def test_unknown_conditioning_lists_known(family):
    with pytest.raises(ConfigError, match=r"cond: unknown conditioning 'fiilm'.*known: none, film, tfilm, tinytfilm, tvfilm"):
        build_model({"family": family, "cond": "fiilm"}, n_knobs=3)


@pytest.mark.parametrize("family", ["tcn", "s4"])
def test_unknown_activation_lists_known(family):
    with pytest.raises(ConfigError, match=r"unknown activation 'swishy'; known: .*prelu.*rational.*tanh"):
        build_model({"family": family, "activation": "swishy"}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn", "gcn", "s4", "lstm"])
def test_unknown_option_names_key(family):
    with pytest.raises(ConfigError, match=r"model\.chanels: unknown option for family"):
        build_model({"family": family, "chanels": 8}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn", "gcn", "s4"])
def test_bad_size(family):
    with pytest.raises(ConfigError, match=r"params\.yaml: model\.channels: must be an integer ≥ 1, got 0"):
        build_model({"family": family, "channels": 0}, n_knobs=0)


def test_wrong_knob_count_at_run_time():
    model = build_model({"family": "tcn", "cond": "film"}, n_knobs=3)
    with pytest.raises(ValueError, match=r"knobs shape \(1, 2\), expected \(1, 3\)"):
        model(torch.zeros(1, 1, 8), torch.zeros(1, 2))


def test_lstm_unknown_conditioning_lists_known():
    with pytest.raises(ConfigError, match=r"cond: unknown conditioning 'film' for lstm; known: concat, tvconcat, none"):
        build_model({"family": "lstm", "cond": "film"}, n_knobs=3)


@pytest.mark.parametrize(("spec", "message"), [
    ({"family": "tcn", "cond": "tfilm", "cond_style": "reference"},
     r"^params\.yaml: model\.cond_style: unknown conditioning style 'reference'; known: nablafx, paper$"),
    ({"family": "gcn", "residual": "skip"}, r"^params\.yaml: model\.residual: unknown residual 'skip'; known: identity, gain, gain-uniform, copy$"),
    ({"family": "s4", "residual": "copy"}, r"^params\.yaml: model\.residual: unknown residual 'copy' for s4; known: identity, gain$"),
    ({"family": "s4", "pre_activation": "sine"}, r"^params\.yaml: model\.pre_activation: unknown activation 'sine'; known: "),
    ({"family": "lstm", "cond": "tvconcat", "cond_block": 0}, r"^params\.yaml: model\.cond_block: must be an integer ≥ 1, got 0$"),
])
def test_paper_layout_options_name_the_key(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec, n_knobs=1)


@pytest.mark.parametrize(("spec", "message"), [
    ({"family": "s4", "state_dim": 7}, r"model\.state_dim: must be an even integer"),
    ({"family": "s4", "ssm_init": "legs"}, r"ssm_init: unknown initialisation 'legs'; known: lin, inv"),
    ({"family": "s4", "dt_min": 0.5, "dt_max": 0.1}, r"dt_min ≤ dt_max"),
])
def test_s4_bad_options(spec, message):
    with pytest.raises(ConfigError, match=message):
        build_model(spec, n_knobs=0)


def test_film_without_knobs_is_unconditioned():
    model = build_model({"family": "tcn", "cond": "film"}, n_knobs=0)
    assert model.n_knobs == 0
    y, _ = model(torch.zeros(1, 1, 16))
    assert y.shape == (1, 1, 16)
