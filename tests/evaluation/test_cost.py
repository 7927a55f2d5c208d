"""Cost stage: MAC counts against closed forms, real-time factors, the stage's JSON and errors."""

from __future__ import annotations

import json

import pytest
import torch
import torchaudio.functional as taf
import yaml

from nablafx.evaluation import cost as C
from nablafx.export import save_model
from nablafx.registry import build_model
from nablafx.utils import run_stage
from stages import cost as stage

from ..conftest import params_with

SR = 48000
TCN = {"family": "tcn", "channels": 4, "blocks": 3, "kernel_size": 3, "dilation_growth": 2,
       "activation": "tanh", "cond": "none"}


def tcn_macs_per_sample(channels, blocks, kernel_size):
    """Block 0: conv 1→C (K taps) + residual 1×1 (1→C, no bias); blocks 1…: conv C→C (K taps);
    output 1×1 C→1.  Bias adds and tanh are not MACs."""
    c, k = channels, kernel_size
    return k * c + c + (blocks - 1) * k * c * c + c


def test_tcn_macs_equal_the_closed_form():
    model = build_model(TCN, n_knobs=0, sample_rate=SR).eval()
    res = C.count_macs(model, SR, seconds=0.25)
    expected = tcn_macs_per_sample(4, 3, 3) * SR  # 116 MACs per sample
    assert res["macs_per_second"] == pytest.approx(expected, rel=0.01)
    assert res["uncounted_ops"] == []


def test_lstm_macs_equal_the_closed_form():
    # LSTM with hidden H on [x, knobs] (I = 1 + 2): 4H(I + H) per sample, plus the H→1 read-out
    model = build_model({"family": "lstm", "hidden_size": 8}, n_knobs=2, sample_rate=SR).eval()
    res = C.count_macs(model, SR, seconds=0.05)
    h, i = 8, 3
    assert res["macs_per_second"] == pytest.approx((4 * h * (i + h) + h) * SR, rel=0.01)
    assert res["macs_by_op"]["aten.lstm"] == 4 * h * (i + h) * int(0.05 * SR)


def test_without_the_lstm_formula_the_lstm_is_reported_uncounted(monkeypatch):
    monkeypatch.setattr(C, "_extra_formulas", lambda: {})
    lstm = torch.nn.LSTM(1, 4, batch_first=True)
    with torch.inference_mode():
        res = C.count_flops(lambda: lstm(torch.randn(1, 64, 1)))
    assert res["uncounted_ops"], res  # e.g. aten.mkldnn_rnn_layer: flop_counter has no formula for it


def test_fft_and_iir_formulas():
    res = C.count_flops(lambda: torch.fft.rfft(torch.randn(4, 1024)))
    assert res["macs"] == 4 * round(2.5 * 1024 * 10 / 2)  # 2.5·N·log2 N FLOPs per real transform
    x = torch.randn(1, 1, 1000)
    res = C.count_flops(lambda: taf.lfilter(x, torch.tensor([1.0, -0.5, 0.2]), torch.tensor([0.3, 0.2, 0.1])))
    # biquad: 3 feed-forward taps (a conv1d) + 2 feedback taps (torchaudio's IIR loop) per sample
    assert res["macs_by_op"] == {"aten.convolution": 3000, "torchaudio._lfilter_core_loop": 2000}


def test_rtf_has_every_frame_size_and_positive_values():
    model = build_model(TCN, n_knobs=0, sample_rate=SR)
    threads = torch.get_num_threads()
    cfg = C.cost_config(params_with(cost={"audio_seconds": 0.05, "max_seconds_per_size": 0.5, "mac_seconds": 0.05,
                                          "repeats": 1}))
    res = C.measure_cost(model, SR, cfg)
    assert torch.get_num_threads() == threads  # restored after the 1-thread measurement
    assert set(res["rtf"]) == {"offline", *map(str, params_with()["cost"]["frame_sizes"])}
    assert all(v > 0 for v in res["rtf"].values()), res["rtf"]
    assert res["params"] == sum(p.numel() for p in model.parameters())
    assert res["macs_per_second"] == pytest.approx(tcn_macs_per_sample(4, 3, 3) * SR, rel=0.01)


def _stage(tmp_path, cost=None, model_dir=None):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(params_with(cost=cost if cost is not None else
                                                 {"audio_seconds": 0.05, "max_seconds_per_size": 0.5,
                                                  "mac_seconds": 0.05, "repeats": 1, "frame_sizes": [32, 512, 16384]})))
    out = tmp_path / "reports" / "cost.json"
    argv = ["--params", str(params), "--model-dir", str(model_dir or tmp_path / "model"), "--out", str(out)]
    return run_stage(stage.main, argv), out


def test_stage_writes_valid_json(tmp_path, capsys):
    model = build_model(TCN, n_knobs=0, sample_rate=SR)
    save_model(model, tmp_path / "model", variant="tiny-tcn", device="Fake-Drive")
    rc, out = _stage(tmp_path)
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert report["model"] == {"variant": "tiny-tcn", "family": "tcn", "device": "Fake-Drive"}
    assert set(report["rtf"]) == {"offline", "32", "512", "16384"}
    assert report["params"] > 0 and report["macs_per_second"] > 0
    assert "tiny-tcn" in capsys.readouterr().out


def test_stage_without_a_model_is_a_one_line_error(tmp_path, capsys):
    rc, out = _stage(tmp_path, model_dir=tmp_path / "nothing")
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 1 and str(tmp_path / "nothing") in err, err


@pytest.mark.parametrize("cost, key", [({"frame_sizes": [0, 32]}, "cost.frame_sizes"),
                                       ({"audio_seconds": -1}, "cost.audio_seconds"),
                                       ({"threads": 0}, "cost.threads"),
                                       ({"frames": [32]}, "cost.frames")])
def test_bad_cost_params_name_the_key(tmp_path, capsys, cost, key):
    rc, _ = _stage(tmp_path, cost=cost)
    err = capsys.readouterr().err
    assert rc == 2 and key in err and err.count("\n") == 1, err
