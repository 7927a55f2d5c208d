"""Bad options fail at build time, naming the key and listing what is known."""

from __future__ import annotations

import pytest
import torch

from nablafx.registry import ConfigError, build_model


def test_unknown_family_lists_known():
    with pytest.raises(ConfigError, match=r"model\.family: unknown family 'wavenet'; known: .*lstm.*tcn"):
        build_model({"family": "wavenet"}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn"])
def test_unknown_conditioning_lists_known(family):
    with pytest.raises(ConfigError, match=r"cond: unknown conditioning 'fiilm'.*known: none, film, tfilm, tinytfilm, tvfilm"):
        build_model({"family": family, "cond": "fiilm"}, n_knobs=3)


@pytest.mark.parametrize("family", ["tcn"])
def test_unknown_activation_lists_known(family):
    with pytest.raises(ConfigError, match=r"unknown activation 'swishy'; known: .*prelu.*rational.*tanh"):
        build_model({"family": family, "activation": "swishy"}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn"])
def test_unknown_option_names_key(family):
    with pytest.raises(ConfigError, match=r"model\.chanels: unknown option for family"):
        build_model({"family": family, "chanels": 8}, n_knobs=0)


@pytest.mark.parametrize("family", ["tcn"])
def test_bad_size(family):
    with pytest.raises(ConfigError, match=r"channels must be an integer ≥ 1"):
        build_model({"family": family, "channels": 0}, n_knobs=0)


def test_wrong_knob_count_at_run_time():
    model = build_model({"family": "tcn", "cond": "film"}, n_knobs=3)
    with pytest.raises(ValueError, match=r"knobs shape \(1, 2\), expected \(1, 3\)"):
        model(torch.zeros(1, 1, 8), torch.zeros(1, 2))
