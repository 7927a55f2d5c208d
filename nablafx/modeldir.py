"""A trained model's folder read without torch: its config, its knobs, its metrics.

``nablafx process``, ``info`` and ``export`` check everything a user can get wrong (a folder of
another version, unknown knob names, values outside [0, 1]) through this module before torch is
imported, so a mistake costs a fraction of a second and leaves nothing behind.

Knobs are named by their letter in the dataset's knob codes (``D`` of ``D075_T050``, any case), or
by a longer name when one is known: a ``knob_names`` mapping (letter → name) in ``config.yaml``, or
else the ``knobs`` of the model's device in ``metadata.json`` at the params.yaml ``data.root`` of the
working folder (the shipped dataset names its knobs there: ``Drive``, ``Tone``).
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from nablafx import fileio
from nablafx.errors import ConfigError

FORMAT_VERSION = 1  # model.pt = state dict of tensors; config.yaml = spec, knobs, rate, run info, model_sha256
RETRAIN = "retrain it (dvc repro train)"


def read_config(model_dir: str | Path) -> dict:
    """``config.yaml`` of a model folder, checked for the folder format; one-line errors."""
    model_dir = Path(model_dir)
    if model_dir.exists() and not model_dir.is_dir():
        raise ConfigError(f"{model_dir}: not a model folder (a file; expected a folder holding config.yaml "
                          "and model.pt, e.g. artifacts/model)")
    cfg_path = model_dir / "config.yaml"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{cfg_path}: not found (train a model first: dvc repro train)")
    try:
        config = yaml.safe_load(cfg_path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise fileio.CorruptFileError(f"{cfg_path}: not valid YAML ({str(err).splitlines()[0]}); {RETRAIN}") from None
    if not isinstance(config, dict):
        raise fileio.CorruptFileError(f"{cfg_path}: not a mapping; {RETRAIN}")
    fileio.check_written_by(model_dir, config, "model folder", FORMAT_VERSION, RETRAIN)
    if not (model_dir / "model.pt").is_file():
        raise FileNotFoundError(f"{model_dir / 'model.pt'}: model weights file not found; {RETRAIN}")
    return config


def _names_from_dataset(device: str | None, project: Path) -> dict[str, str]:
    """letter → name from ``<data.root>/metadata.json`` of ``project/params.yaml`` (if any)."""
    try:
        params = yaml.safe_load((project / "params.yaml").read_text())
        root = project / Path(params["data"]["root"])
        meta = json.loads((root / "metadata.json").read_text())
        knobs = meta["devices"][device]["knobs"]
        return {str(k): str(v["name"]) for k, v in knobs.items() if isinstance(v, dict) and v.get("name")}
    except Exception:  # no params, no metadata, another layout: names are optional
        return {}


def knob_names(config: dict, model_dir: str | Path | None = None) -> list[tuple[str, str | None]]:
    """``[(letter, name or None)]`` of the knobs the model is conditioned on, in its order.

    Names: ``knob_names`` of config.yaml, else the dataset's metadata.json found through the
    params.yaml of the project holding the model (``<project>/artifacts/model``) or of the working folder.
    """
    n = int(config.get("n_knobs") or 0)
    letters = list(config.get("knob_letters") or [])[:n]
    letters += [f"K{i + 1}" for i in range(len(letters), n)]
    names = config.get("knob_names") or {}
    projects = [Path(model_dir).resolve().parent.parent] if model_dir is not None else []
    for project in [*projects, Path.cwd()]:
        if names:
            break
        names = _names_from_dataset(config.get("device"), project)
    return [(letter, names.get(letter)) for letter in letters]


def resolve_knobs(config: dict, assignments: list[str], positional: str | None,
                  model_dir: str | Path | None = None) -> list[float]:
    """Knob values in the model's order from ``--knob NAME=VALUE`` items and/or a comma list.

    Every knob of the model needs a value in [0, 1]; names are letters (any case) or known names.
    """
    knobs = knob_names(config, model_dir)
    labels = ", ".join(f"{letter} ({name})" if name else letter for letter, name in knobs) or "none"
    if not knobs:
        if assignments or positional:
            raise ConfigError(f"this model ({config.get('variant')}) is not conditioned on knobs; "
                              "drop the knob values")
        return []
    values: dict[int, float] = {}

    def parse(text: str, what: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise ConfigError(f"{what}: {text!r} is not a number; knob values are in [0, 1]") from None
        if not 0.0 <= v <= 1.0:
            raise ConfigError(f"{what}: {v:g} is outside [0, 1]")
        return v

    if positional is not None:
        parts = [p.strip() for p in positional.split(",")] if positional.strip() else []
        if len(parts) != len(knobs):
            raise ConfigError(f"knob values {positional!r}: {len(parts)} given, the model needs {len(knobs)} "
                              f"(in this order: {labels})")
        for i, p in enumerate(parts):
            values[i] = parse(p, f"knob {knobs[i][0]}")
    lookup = {}
    for i, (letter, name) in enumerate(knobs):
        lookup[letter.lower()] = i
        if name:
            lookup[name.lower()] = i
    for item in assignments:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--knob {item!r}: expected NAME=VALUE, e.g. --knob {knobs[0][0]}=0.5")
        idx = lookup.get(key.strip().lower())
        if idx is None:
            raise ConfigError(f"--knob {item!r}: unknown knob {key.strip()!r}; this model's knobs: {labels}")
        values[idx] = parse(text.strip(), f"--knob {key.strip()}")
    missing = [knobs[i][0] for i in range(len(knobs)) if i not in values]
    if missing:
        raise ConfigError(f"no value for knob{'s' if len(missing) > 1 else ''} {', '.join(missing)}; "
                          f"give every knob, e.g. " + " ".join(f"--knob {k[0]}=0.5" for k in knobs))
    return [values[i] for i in range(len(knobs))]


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def test_metrics(model_dir: str | Path) -> tuple[dict | None, Path | None]:
    """The test stage's metrics *of this model*, if present: ``reports/metrics.json`` beside the
    ``artifacts/`` folder holding the model (or in the working folder) whose ``reports/provenance.json``
    names the same training run as ``<model_dir>/provenance.json``."""
    model_dir = Path(model_dir).resolve()
    mine = _read_json(model_dir / "provenance.json")
    if mine is None:
        return None, None
    for reports in dict.fromkeys([model_dir.parent.parent / "reports", Path.cwd().resolve() / "reports"]):
        prov = _read_json(reports / "provenance.json")
        if isinstance(prov, dict) and prov.get("train") == mine:
            metrics = _read_json(reports / "metrics.json")
            if isinstance(metrics, dict):
                return metrics, reports / "metrics.json"
    return None, None
