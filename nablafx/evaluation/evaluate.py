"""The `test` stage's logic: run a trained model over whole test passages and score it.

Stateful models are evaluated on whole passages from a zero initial state (never on
independent chunks), offline or, with ``block_seconds > 0``, block by block with state.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nablafx import metrics
from nablafx.data.audio import read_audio, write_audio
from nablafx.evaluation.loudness import integrated_loudness as loudness_lufs
from nablafx.streaming import process_in_blocks


@torch.no_grad()
def evaluate(model, index: dict, pred_dir: str | Path | None = None, block_seconds: float = 0.0) -> dict:
    sr = index["sample_rate"]
    items = [i for i in index["items"] if i["split"] == "test"]
    stft, mel = metrics.mrstft_loss(), metrics.melstft_loss(sr)
    rows = []
    dry_cache: dict[str, np.ndarray] = {}
    sq_err = sq_tgt = abs_err = 0.0
    n_total = 0
    from nablafx.progress import Progress

    prog = Progress(len(items), "test", unit="passages")
    for it in items:
        if it["dry"] not in dry_cache:
            dry_cache[it["dry"]] = read_audio(it["dry"], sr)
        x = torch.from_numpy(dry_cache[it["dry"]])[None, None]
        y = torch.from_numpy(read_audio(it["wet"], sr))[None, None]
        knobs = torch.tensor([it["knobs"]], dtype=torch.float32) if model.n_knobs else None
        if block_seconds > 0:
            y_hat = process_in_blocks(model, x, knobs, max(1, int(block_seconds * sr)))
        else:
            y_hat, _ = model(x, knobs)
        e = (y_hat - y).double()
        sq_err += float(torch.sum(e**2))
        sq_tgt += float(torch.sum(y.double() ** 2))
        abs_err += float(torch.sum(e.abs()))
        n_total += y.shape[-1]
        lt, lp = loudness_lufs(y, sr), loudness_lufs(y_hat, sr)
        rows.append({"device": index["device"], "knob_code": it["knob_code"], "name": it["name"],
                     **{f"knob_{k}": v for k, v in zip(index["knob_letters"], it["knobs"])},
                     "seconds": round(y.shape[-1] / sr, 3),
                     "l1": float(metrics.l1(y_hat, y)), "mse": float(metrics.mse(y_hat, y)),
                     "esr": float(metrics.esr(y_hat, y)), "mrstft": float(stft(y_hat, y)),
                     "melstft": float(mel(y_hat, y)), "dc": float(metrics.dc_error(y_hat, y)),
                     "lufs_target": lt, "lufs_pred": lp,
                     "loudness_diff_lu": None if lt is None or lp is None else lp - lt})
        if pred_dir is not None:
            out = Path(pred_dir) / (f"{it['knob_code']}.{it['name']}.pred.flac" if it["knob_code"] else f"{it['name']}.pred.flac")
            write_audio(out, y_hat[0, 0].numpy(), sr)
        prog.update(1, esr=rows[-1]["esr"])
    prog.close()
    weights = np.array([r["seconds"] for r in rows])
    lu = [abs(r["loudness_diff_lu"]) for r in rows if r["loudness_diff_lu"] is not None]
    summary = {
        "mae": abs_err / n_total,
        "mse": sq_err / n_total,
        "esr": sq_err / sq_tgt,  # over the whole test set (energy-weighted)
        "esr_mean": float(np.mean([r["esr"] for r in rows])),  # mean of per-passage ESR
        "mrstft": float(np.average([r["mrstft"] for r in rows], weights=weights)),
        "melstft": float(np.average([r["melstft"] for r in rows], weights=weights)),
        "loudness_diff_lu": float(np.mean(lu)) if lu else None,  # mean |pred − target| in LU
        "dc": float(np.average([r["dc"] for r in rows], weights=weights)),
        "passages": len(rows),
        "seconds": round(float(weights.sum()), 2),
    }
    return {"summary": summary, "rows": rows}
