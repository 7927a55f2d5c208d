"""FAD stage: the distance (package maths), the default CREPE embedding, skipping embeddings whose
checkpoints are absent without touching the network, and the stage's errors."""

from __future__ import annotations

import dataclasses
import json
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from nablafx.errors import ConfigError
from nablafx.evaluation import fad as F
from nablafx.utils import run_stage
from stages import fad as stage

from ..conftest import params_with

SR = 48000


def notes(seed: int, seconds: float = 2.0) -> np.ndarray:
    """Plucked-string-like notes: 8 harmonics, exponential decay, random pitch 82–660 Hz, 0.5 s each."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.5 * SR)) / SR
    parts = []
    for _ in range(int(seconds / 0.5)):
        f0 = rng.uniform(82, 660)
        tone = sum(np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h for h in range(1, 9))
        parts.append(0.4 * tone * np.exp(-4 * t))
    return np.concatenate(parts).astype(np.float32)


def clip(x, drive):
    return (np.tanh(drive * x) / np.tanh(drive)).astype(np.float32)


@pytest.fixture(scope="module")
def crepe():
    return F.CrepeEmbedder("tiny", hop_ms=20.0, silence_db=-60.0)


@pytest.fixture(scope="module")
def reference():
    return [notes(s) for s in range(3)]


def embed(embedder, signals):
    return np.concatenate([embedder(x, SR) for x in signals])


@pytest.fixture(scope="module")
def reference_emb(crepe, reference):
    return embed(crepe, reference)


def test_frechet_distance_is_the_closed_form_for_gaussians():
    # 2-D Gaussians with diagonal covariances: FD = |mu1 - mu2|^2 + sum (s1 - s2)^2
    rng = np.random.default_rng(0)
    a = rng.standard_normal((200_000, 2)) * [1.0, 2.0] + [0.0, 1.0]
    b = rng.standard_normal((200_000, 2)) * [3.0, 0.5] + [2.0, -1.0]
    expected = (2.0**2 + 2.0**2) + (1.0 - 3.0) ** 2 + (2.0 - 0.5) ** 2
    assert F.frechet_distance(a, b) == pytest.approx(expected, rel=0.02)


def test_fad_of_a_set_against_itself_is_zero(reference_emb):
    emb = reference_emb
    assert emb.shape == (emb.shape[0], 256) and emb.shape[0] > 250
    # tolerance: sqrtm round-off (measured ~4e-9), 4 orders below the mildest distortion below (~0.1)
    assert abs(F.frechet_distance(emb, emb)) < 1e-5


def test_fad_grows_with_distortion(crepe, reference, reference_emb):
    sets = [[clip(x, drive) for x in reference] for drive in (2.0, 6.0, 20.0)]  # soft clipping, harder and harder
    fads = [F.frechet_distance(embed(crepe, s), reference_emb) for s in sets]
    assert fads[0] > 1e-3, fads  # far above the self-distance tolerance
    assert fads[0] < fads[1] < fads[2], fads


# ---------------------------------------------------------------------------------- data on disk
def write(path: Path, x: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, SR, subtype="PCM_24" if path.suffix == ".flac" else "FLOAT")
    return path


def make_test_set(root: Path, seconds: float = 0.5, pred=lambda x: clip(x, 3.0)) -> tuple[Path, Path]:
    """A prepared index with two test passages × two knob settings, and predictions for them."""
    items = []
    pred_dir = root / "pred"
    pred_dir.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(("a", "b")):
        dry = notes(10 + k, seconds)
        dry_path = write(root / "dry" / f"{name}.input.wav", dry)
        for code, drive in (("D020", 2.0), ("D080", 8.0)):
            wet = clip(dry, drive)
            wet_path = write(root / "wet" / code / f"{code}.{name}.target.wav", wet)
            items.append({"split": "test", "dry": str(dry_path), "wet": str(wet_path), "knobs": [drive / 10],
                          "knob_code": code, "name": name})
            write(pred_dir / f"{code}.{name}.pred.flac", pred(wet))
    items.append({"split": "train", "dry": "x", "wet": "y", "knobs": [0.0], "knob_code": "D000", "name": "t"})
    index = {"device": "Fake-Drive", "sample_rate": SR, "knob_letters": ["D"], "n_knobs": 1, "items": items}
    index_path = root / "index.json"
    index_path.write_text(json.dumps(index))
    return index_path, pred_dir


def write_params(path: Path, fad: dict) -> Path:
    path.write_text(yaml.safe_dump(params_with(data={"device": "Fake-Drive"}, fad=fad)))
    return path


def fad_cfg(**changes) -> F.FADConfig:
    """params.yaml's ``fad:`` with ``changes``."""
    return dataclasses.replace(F.fad_config(params_with()), **changes)


@pytest.fixture
def network_spy(monkeypatch):
    """Record (and refuse) every way a loader could reach the network or download a file."""
    calls = []

    def spy(name):
        def f(*args, **kwargs):
            calls.append((name, args[:1]))
            raise AssertionError(f"{name} called: {args[:1]}")
        return f

    monkeypatch.setattr(torch.hub, "load", spy("torch.hub.load"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", spy("torch.hub.download_url_to_file"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", spy("torch.hub.load_state_dict_from_url"))
    monkeypatch.setattr(urllib.request, "urlopen", spy("urllib.request.urlopen"))
    monkeypatch.setattr(socket.socket, "connect", spy("socket.connect"))
    return calls


def test_missing_checkpoints_are_skipped_with_the_reason_and_nothing_is_fetched(tmp_path, network_spy):
    index_path, pred_dir = make_test_set(tmp_path)
    ckpt = tmp_path / "fad_ckpt"  # does not exist
    cfg = fad_cfg(embeddings=["crepe_tiny", "vggish", "pann", "clap"], ckpt_dir=str(ckpt), dry_baseline=False)
    index = json.loads(index_path.read_text())
    report = F.fad_report(index, pred_dir, cfg)
    assert network_spy == []
    assert not ckpt.exists()  # nothing created, nothing downloaded
    assert set(report["skipped"]) == {"vggish", "pann", "clap"}
    for name, reason in report["skipped"].items():
        assert reason == f"no checkpoint in {ckpt} (downloads are disabled)", (name, reason)
    assert "checkpoints/vggish-10086976.pth" in F.skipped_details("vggish", ckpt)
    assert "Cnn14_16k_mAP%3D0.438.pth" in F.skipped_details("pann", ckpt)
    assert list(report["fad"]) == ["crepe_tiny"] and report["fad"]["crepe_tiny"] > 0
    assert "256-d" in report["embeddings"]["crepe_tiny"]
    assert report["frames"]["crepe_tiny"]["target"] > 50


HUBCONF = '''
import numpy as np
import torch
from torch import nn


class Stub(nn.Module):
    """Stands in for VGGish: log-spectrum of 0.1 s frames through a fixed random projection."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embeddings = nn.Sequential(nn.Linear(801, 16), nn.ReLU())
        self.postprocess = True

    def forward(self, x, fs):
        x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        frames = x[: len(x) // 1600 * 1600].reshape(-1, 1600)
        return self.embeddings(torch.log1p(torch.fft.rfft(frames).abs()))


def vggish(**kwargs):
    return Stub()
'''


def test_package_loader_runs_offline_from_checkpoints_in_ckpt_dir(tmp_path, monkeypatch):
    """The package's real VGGish loader (torch.hub) runs from a local copy without the network."""
    index_path, pred_dir = make_test_set(tmp_path)
    ckpt = tmp_path / "fad_ckpt"
    (ckpt / "harritaylor_torchvggish_master").mkdir(parents=True)
    (ckpt / "harritaylor_torchvggish_master" / "hubconf.py").write_text(HUBCONF)
    (ckpt / "checkpoints").mkdir()
    for f in ("vggish-10086976.pth", "vggish_pca_params-970ea276.pth"):
        (ckpt / "checkpoints" / f).write_bytes(b"")
    hub_dir = torch.hub.get_dir()
    cfg = fad_cfg(embeddings=["vggish"], ckpt_dir=str(ckpt), dry_baseline=False)
    report = F.fad_report(json.loads(index_path.read_text()), pred_dir, cfg)
    assert report["skipped"] == {}, report["skipped"]
    assert report["fad"]["vggish"] > 0
    assert torch.hub.get_dir() == hub_dir  # the package's torch.hub.set_dir(ckpt_dir) is undone


def test_no_network_guard_refuses_downloads():
    with F.no_network():
        with pytest.raises(RuntimeError, match="download refused"):
            torch.hub.download_url_to_file("https://example.invalid/x.pth", "/tmp/never")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 9), timeout=1)


# ---------------------------------------------------------------------------------- the stage
def run_fad_stage(tmp_path, index_path, pred_dir, fad=None):
    params = write_params(tmp_path / "params.yaml", fad or {"embeddings": ["crepe_tiny", "vggish"],
                                                            "ckpt_dir": str(tmp_path / "none")})
    out = tmp_path / "reports" / "fad.json"
    argv = ["--params", str(params), "--index", str(index_path), "--pred-dir", str(pred_dir), "--out", str(out)]
    return run_stage(stage.main, argv), out


def test_stage_writes_fad_json(tmp_path, capsys):
    index_path, pred_dir = make_test_set(tmp_path)
    rc, out = run_fad_stage(tmp_path, index_path, pred_dir)
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert set(report["fad"]) == {"crepe_tiny"} and report["fad"]["crepe_tiny"] > 0
    # the predictions (tanh drive 3 of the targets) sit closer to the targets than the dry input does
    assert report["fad"]["crepe_tiny"] < report["fad_dry_input"]["crepe_tiny"]
    assert "downloads are disabled" in report["skipped"]["vggish"]
    out = capsys.readouterr().out
    assert "fad: crepe_tiny" in out and "vggish-10086976.pth" in out


def test_missing_predictions_folder_is_a_one_line_error(tmp_path, capsys):
    index_path, _ = make_test_set(tmp_path)
    missing = tmp_path / "no-such-folder"
    rc, out = run_fad_stage(tmp_path, index_path, missing)
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    assert err.count("\n") == 1 and str(missing) in err, err


def test_missing_prediction_file_is_named(tmp_path, capsys):
    index_path, pred_dir = make_test_set(tmp_path)
    gone = pred_dir / "D080.b.pred.flac"
    gone.unlink()
    rc, _ = run_fad_stage(tmp_path, index_path, pred_dir)
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and str(gone) in err, err


@pytest.mark.parametrize("fad, key", [({"embeddings": ["vggish2"]}, "fad.embeddings"),
                                      ({"hop_ms": 0}, "fad.hop_ms"),
                                      ({"silence": -60}, "fad.silence"),
                                      ({"dry_baseline": "yes"}, "fad.dry_baseline")])
def test_bad_fad_params_name_the_key(fad, key):
    with pytest.raises(ConfigError, match=f"params.yaml: {key}"):
        F.fad_config(params_with(fad=fad))


def test_silent_predictions_are_reported_not_a_crash(tmp_path, capsys):
    """A model whose output is (near) silent gets no FAD and a reason; the stage still succeeds
    (it used to crash reshaping an empty batch)."""
    index_path, pred_dir = make_test_set(tmp_path)
    for f in Path(pred_dir).glob("*.pred.flac"):
        data, sr = sf.read(str(f))
        sf.write(str(f), np.zeros_like(data), sr)
    rc, out = run_fad_stage(tmp_path, index_path, pred_dir)
    assert rc == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    assert "crepe_tiny" not in report["fad"]
    assert "output is (near) silent" in report["skipped"]["crepe_tiny"]
    assert F.CrepeEmbedder().__call__(np.zeros(48000), 48000).shape[0] == 0
