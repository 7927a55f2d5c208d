"""``nablafx process`` and ``nablafx info`` driven as separate processes on a model the pipeline trained."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
import yaml

from nablafx.export import load_model
from nablafx.streaming import process_in_blocks

from .conftest import nablafx

pytestmark = pytest.mark.slow


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.sqrt(np.mean(b**2)), 1e-12))


def _model_out(model, x: np.ndarray, knobs, raw=False) -> np.ndarray:
    """Offline reference at the model's rate: model(x) − model(silence) (one call, no blocks)."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None, :]
    k = torch.tensor([knobs] * xt.shape[0])
    with torch.no_grad():
        y, _ = model(xt, k)
        if not raw:
            y = y - model(torch.zeros_like(xt), k)[0]
    return y[:, 0].numpy()


def test_stereo_at_another_rate_with_named_knobs(trained_dir, tmp_path):
    sr = 44100
    t = np.arange(int(1.5 * sr)) / sr
    left = 0.4 * np.sin(2 * np.pi * 220 * t) * np.exp(-2 * t)
    right = 0.2 * np.sin(2 * np.pi * 330 * t)
    sf.write(tmp_path / "in.wav", np.stack([left, right], 1).astype(np.float32), sr, subtype="PCM_24")
    res = nablafx("process", trained_dir / "artifacts/model", tmp_path / "in.wav", tmp_path / "out.flac",
                  "--knob", "D=0.7", "--knob", "tone=0.25", "--block", "128", cwd=trained_dir,
                  env={"NABLAFX_PROGRESS_SECONDS": "1e-9"})
    assert res.returncode == 0, res.stderr
    assert "2 channel(s), 44100 Hz (model 48000 Hz, resampled)" in res.stdout
    # a log (not a terminal): progress lines with the amount done, the rate and the time left
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("process: ")]
    assert lines and all(" s (" in ln and "s/s, ETA " in ln for ln in lines), res.stderr
    y, rate = sf.read(tmp_path / "out.flac", always_2d=True)
    assert rate == sr and y.shape == (len(t), 2)
    # the documented rule: each channel on its own (dual mono), resampled with libsoxr VHQ both ways
    model, _ = load_model(trained_dir / "artifacts/model")
    x48 = soxr.resample(np.stack([left, right], 1).astype(np.float32), sr, 48000, quality="VHQ").T
    ref = soxr.resample(_model_out(model, x48, [0.7, 0.25]).T.astype(np.float32), 48000, sr, quality="VHQ")
    n = min(len(ref), len(y))
    for ch in range(2):
        assert rel_err(y[:n, ch], ref[:n, ch]) < 2e-4, ch  # 24-bit FLAC output: quantisation ~1e-7 of FS


def test_positional_and_old_forms_agree(trained_dir, tmp_path):
    sr = 48000
    x = (0.3 * np.random.default_rng(0).standard_normal(int(0.4 * sr))).astype(np.float32)
    sf.write(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    model_dir = trained_dir / "artifacts/model"
    forms = {
        "named": ["process", model_dir, "in.wav", "a.wav", "--knob", "Drive=0.3", "--knob", "T=0.9"],
        "positional": ["process", model_dir, "in.wav", "b.wav", "0.3,0.9"],
        "old": ["process", "in.wav", "c.wav", "--knobs", "0.3,0.9", "--model-dir", model_dir, "--block", "100"],
    }
    for name, args in forms.items():
        res = nablafx(*args, "--quiet", cwd=tmp_path)
        assert res.returncode == 0, (name, res.stderr)
        assert res.stderr == "", name
    a, b, c = (sf.read(tmp_path / f)[0] for f in ("a.wav", "b.wav", "c.wav"))
    assert np.array_equal(a, b)
    assert rel_err(c, a) < 1e-5  # another block size, the same output
    model, _ = load_model(model_dir)
    assert rel_err(a, _model_out(model, x[None], [0.3, 0.9])[0]) < 1e-5


def test_raw_output_is_the_model_streamed_with_no_latency(trained_dir, tmp_path):
    sr = 48000
    x = (0.3 * np.random.default_rng(1).standard_normal(1000 + 3 * 64)).astype(np.float32)  # ragged last block
    sf.write(tmp_path / "in.wav", x, sr, subtype="FLOAT")
    res = nablafx("process", trained_dir / "artifacts/model", tmp_path / "in.wav", tmp_path / "out.wav",
                  "0.5,0.5", "--block", "64", "--raw", "--quiet", cwd=trained_dir)
    assert res.returncode == 0, res.stderr
    y = sf.read(tmp_path / "out.wav", dtype="float32")[0]
    model, _ = load_model(trained_dir / "artifacts/model")
    offline = _model_out(model, x[None], [0.5, 0.5], raw=True)[0]
    assert y.shape == x.shape
    assert rel_err(y, offline) < 1e-5
    streamed = process_in_blocks(model, torch.from_numpy(x)[None, None], torch.tensor([[0.5, 0.5]]), 64)
    assert rel_err(y, streamed[0, 0].numpy()) < 1e-6


def test_info_on_a_trained_model(trained_dir):
    res = nablafx("info", "artifacts/model", "--json", cwd=trained_dir)
    assert res.returncode == 0, res.stderr
    d = json.loads(res.stdout)
    model, cfg = load_model(trained_dir / "artifacts/model")
    assert d["variant"] == "tcn-tiny" and d["family"] == "tcn"
    assert d["params"] == sum(p.numel() for p in model.parameters()) == cfg["params"]
    assert d["receptive_field"] == 1 + 2 * (1 + 4) and d["latency_samples"] == 0
    assert d["knobs"] == [{"letter": "D", "name": "Drive"}, {"letter": "T", "name": "Tone"}]
    assert d["training"]["steps"] == 4 and d["training"]["best_val_esr"] == cfg["best_val_esr"]
    metrics = json.loads((trained_dir / "reports/metrics.json").read_text())
    assert d["test"] == metrics["test"]
    text = nablafx("info", "artifacts/model", cwd=trained_dir)
    assert text.returncode == 0
    for part in ("tcn-tiny", "receptive field   0.2 ms (11 samples)", "latency           0 samples",
                 "knobs             D (Drive), T (Tone)", "test metrics      esr"):
        assert part in text.stdout, (part, text.stdout)


def test_export_runs_without_nablafx(trained_dir, tmp_path):
    """`nablafx export` as ONNX and TorchScript; ONNX Runtime and a bare torch (no torchaudio, no
    nablafx) stream the files block by block like the PyTorch model."""
    import subprocess
    import sys

    import onnxruntime as ort

    block = 128
    for fmt, ext in (("onnx", ".onnx"), ("torchscript", ".pt")):
        res = nablafx("export", "artifacts/model", "--format", fmt, "--block", block, cwd=trained_dir)
        assert res.returncode == 0, res.stderr
        path = trained_dir / f"artifacts/export/tcn-tiny-b{block}{ext}"
        assert path.is_file() and f"{path.relative_to(trained_dir)}: tcn-tiny as {fmt}" in res.stdout
    desc = json.loads((trained_dir / f"artifacts/export/tcn-tiny-b{block}.onnx.json").read_text())
    assert desc["knobs"] == [{"letter": "D", "name": "Drive"}, {"letter": "T", "name": "Tone"}]
    assert desc["sample_rate"] == 48000 and desc["block"] == block and desc["initial_state"] == "zeros"
    model, _ = load_model(trained_dir / "artifacts/model")
    x = (0.3 * np.random.default_rng(5).standard_normal(20 * block)).astype(np.float32)
    knobs = [[0.1, 0.8]] * 10 + [[0.9, 0.3]] * 10  # a knob change in the middle
    traj = torch.tensor(np.repeat(np.array(knobs, dtype=np.float32).T[None], block, axis=-1))
    with torch.no_grad():
        ref = process_in_blocks(model, torch.from_numpy(x)[None, None], traj, block)[0, 0].numpy()
    sess = ort.InferenceSession(str(trained_dir / f"artifacts/export/tcn-tiny-b{block}.onnx"),
                                providers=["CPUExecutionProvider"])
    state = {i["name"]: np.zeros(i["shape"], dtype=i["dtype"]) for i in desc["inputs"] if i["name"].startswith("state")}
    ys = []
    for j in range(20):
        y, *outs = sess.run(None, {"x": x[None, None, j * block : (j + 1) * block],
                                   "knobs": np.array([knobs[j]], dtype=np.float32), **state})
        state = {f"state_in_{i}": o for i, o in enumerate(outs)}
        ys.append(y[0, 0])
    assert rel_err(np.concatenate(ys), ref) < 1e-5
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "knobs.npy", np.array(knobs, dtype=np.float32))
    script = f"""
import sys, json, numpy as np, torch
desc = json.load(open({str(trained_dir / f'artifacts/export/tcn-tiny-b{block}.pt.json')!r}))
m = torch.jit.load({str(trained_dir / f'artifacts/export/tcn-tiny-b{block}.pt')!r})
x, knobs = np.load({str(tmp_path / 'x.npy')!r}), np.load({str(tmp_path / 'knobs.npy')!r})
state = [torch.zeros(i["shape"], dtype=getattr(torch, i["dtype"])) for i in desc["inputs"] if i["name"].startswith("state")]
ys = []
for j in range(20):
    y, *state = m(torch.from_numpy(x[None, None, j * {block}:(j + 1) * {block}]), torch.from_numpy(knobs[j:j + 1]), *state)
    ys.append(y[0, 0].numpy())
np.save({str(tmp_path / 'y.npy')!r}, np.concatenate(ys))
assert not any(k.startswith(("torchaudio", "nablafx")) for k in sys.modules), "imported more than torch"
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr
    assert rel_err(np.load(tmp_path / "y.npy"), ref) < 1e-5


def test_train_and_test_stages_report_progress(trained_dir):
    logs = json.loads((trained_dir / "stage_stderr.json").read_text())
    train = [ln for ln in logs["train"].splitlines() if ln.startswith("train: ")]
    assert [ln.split(" ")[1] for ln in train] == ["1/4", "2/4", "3/4", "4/4"], logs["train"]
    assert all(" loss " in ln and " steps/s, ETA " in ln for ln in train), train
    assert "val " in train[-1]  # validation ran at step 2
    test = [ln for ln in logs["test"].splitlines() if ln.startswith("test: ") and "passages (" in ln]
    assert [ln.split(" ")[1] for ln in test] == ["1/3", "2/3", "3/3"], logs["test"]


# --------------------------------------------------------------------------- bad input


def _bad_cases(work):
    m = work / "model"
    return {
        "non-audio input": (["process", m, "notes.wav", "out.wav", "0.5,0.5"], "notes.wav: unreadable audio"),
        "truncated FLAC": (["process", m, "trunc.flac", "out.wav", "0.5,0.5"], "trunc.flac: truncated or corrupt"),
        "missing input": (["process", m, "nothere.wav", "out.wav", "0.5,0.5"], "nothere.wav: file not found"),
        "model of another version": (["process", work / "old_model", "in.wav", "out.wav", "0.5,0.5"],
                                     "written by nablafx 0.0.1 (model folder format 0)"),
        "no model folder": (["process", work / "nomodel", "in.wav", "out.wav", "0.5,0.5"], "config.yaml: not found"),
        "unknown knob": (["process", m, "in.wav", "out.wav", "--knob", "Gain=0.5", "--knob", "T=0.5"],
                         "unknown knob 'Gain'; this model's knobs: D, T"),
        "knob above 1": (["process", m, "in.wav", "out.wav", "--knob", "D=1.5", "--knob", "T=0.5"],
                         "--knob D: 1.5 is outside [0, 1]"),
        "knob below 0": (["process", m, "in.wav", "out.wav", "--knobs=-0.1,0.5"], "knob D: -0.1 is outside [0, 1]"),
        "knob not a number": (["process", m, "in.wav", "out.wav", "--knob", "D=loud", "--knob", "T=0.5"],
                              "'loud' is not a number"),
        "knob missing": (["process", m, "in.wav", "out.wav", "--knob", "D=0.5"], "no value for knob T"),
        "too many values": (["process", m, "in.wav", "out.wav", "0.5,0.5,0.5"], "3 given, the model needs 2"),
        "block 0": (["process", m, "in.wav", "out.wav", "0.5,0.5", "--block", "0"], "--block 0: the block size"),
        "block -5": (["process", m, "in.wav", "out.wav", "0.5,0.5", "--block", "-5"], "--block -5: the block size"),
        "block not a number": (["process", m, "in.wav", "out.wav", "0.5,0.5", "--block", "x"],
                               "argument --block: invalid int value"),
        "output is a folder": (["process", m, "in.wav", "outdir", "0.5,0.5"], "outdir: is a folder"),
        "output without extension": (["process", m, "in.wav", "out", "0.5,0.5"], "out: output has no extension"),
        "output of another format": (["process", m, "in.wav", "out.mp3", "0.5,0.5"], "extension '.mp3'"),
        "output in a missing folder": (["process", m, "in.wav", "no/such/out.wav", "0.5,0.5"], "does not exist"),
        "info of another version": (["info", work / "old_model"], "written by nablafx 0.0.1"),
        "export block 0": (["export", m, "--format", "onnx", "--block", "0"], "--block 0: the block size"),
        "export unknown format": (["export", m, "--format", "tflite"], "invalid choice: 'tflite'"),
        "export of another version": (["export", work / "old_model", "--format", "onnx"], "written by nablafx 0.0.1"),
        "export to a folder": (["export", m, "--format", "onnx", "--out", "outdir"], "outdir: is a folder"),
    }


def test_bad_input_is_one_line_exit_2_and_leaves_nothing(trained_dir, tmp_path):
    work = tmp_path
    shutil.copytree(trained_dir / "artifacts/model", work / "model")
    shutil.copytree(trained_dir / "artifacts/model", work / "old_model")
    cfg = yaml.safe_load((work / "old_model/config.yaml").read_text())
    cfg.update(nablafx_version="0.0.1", format_version=0)
    (work / "old_model/config.yaml").write_text(yaml.safe_dump(cfg))
    sf.write(work / "in.wav", np.zeros(4800, dtype=np.float32), 48000)
    (work / "notes.wav").write_text("not audio\n")
    sf.write(work / "full.flac", (0.3 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32), 48000)
    data = (work / "full.flac").read_bytes()
    (work / "trunc.flac").write_bytes(data[: len(data) // 2])
    (work / "outdir").mkdir()
    before = sorted(p.name for p in work.rglob("*"))
    for name, (args, expected) in _bad_cases(work).items():
        res = nablafx(*args, cwd=work, timeout=300)  # a hang guard: a starved machine took > 60 s
        assert res.returncode == 2, (name, res.returncode, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, res.stderr)
        assert expected in lines[0], (name, lines[0])
        assert "Traceback" not in res.stderr and res.stdout == "", name
        assert sorted(p.name for p in work.rglob("*")) == before, f"{name}: left files behind"


def test_table_without_the_venv_on_path(tmp_path):
    """`dvc` is found beside the running Python when the venv is not on PATH."""
    res = nablafx("table", "--exp-show", cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert "No such file or directory" not in res.stderr
    assert res.returncode in (0, 2)
    if res.returncode == 2:  # not a DVC repository here: dvc itself ran and said so, in one line
        assert len(res.stderr.strip().splitlines()) == 1 and res.stderr.startswith("error: dvc exp show failed")


def test_process_file_in_process_restores_grad_mode_and_threads(trained_dir, tmp_path):
    """process_file runs inside other programs (tests, notebooks): it must not leave autograd off or the
    thread count at 1 (a global ``torch.set_grad_enabled(False)`` once broke later gradchecks)."""
    from nablafx.fileproc import process_file

    sf.write(tmp_path / "in.wav", np.zeros(480, dtype=np.float32), 48000, subtype="FLOAT")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        process_file(trained_dir / "artifacts/model", tmp_path / "in.wav", tmp_path / "out.wav",
                     knobs_positional="0.5,0.5", block=64, progress=False)
        assert (tmp_path / "out.wav").exists()
        assert torch.is_grad_enabled()
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
