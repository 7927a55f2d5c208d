"""The prepared split index (``artifacts/prepared/index.json``, written by the prepare stage)."""

from __future__ import annotations

import json
from pathlib import Path

from nablafx.errors import DatasetError


def load_index(path: str | Path, device: str | None = None) -> dict:
    """Read the index; with ``device``, refuse an index prepared for another device."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: prepared index not found (run `dvc repro prepare`)")
    index = json.loads(path.read_text())
    if device is not None and index.get("device") != device:
        raise DatasetError(f"{path}: prepared for {index.get('device')!r}, params data.device is {device!r}")
    return index
