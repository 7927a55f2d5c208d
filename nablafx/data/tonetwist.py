"""The ToneTwist AFx layout.

```
<root>/<dry_dir>/{trainval,test}/<name>.input.{wav,flac}
<root>/<Device>/{trainval,test}/<KNOBS>/<KNOBS>.<name>.target.{wav,flac}
```
``<KNOBS>`` is one capital letter and three digits per knob, joined by ``_``
(``D075_T050``); the digits are the knob position on a 0–10 scale × 10, so value/100 ∈ [0, 1].
A device without knobs may put its targets directly under ``{trainval,test}/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nablafx.data.audio import AUDIO_SUFFIXES, DatasetError

SPLITS = ("trainval", "test")
_KNOB_RE = re.compile(r"^([A-Z])(\d{3})$")


@dataclass(frozen=True)
class Pair:
    """One dry/wet file pair of one device at one knob setting."""

    split: str  # "trainval" or "test"
    name: str  # passage name shared by dry and wet files
    dry: Path
    wet: Path
    knob_code: str  # e.g. "D075_T050" ("" for a device without knobs)
    knob_letters: tuple[str, ...] = field(default=())
    knobs: tuple[float, ...] = field(default=())  # in [0, 1]


def parse_knob_code(code: str, where: str | Path = "") -> tuple[tuple[str, ...], tuple[float, ...]]:
    """``"D075_T050"`` → ``(("D", "T"), (0.75, 0.5))``; an error names ``where``."""
    if code == "":
        return (), ()
    letters, values = [], []
    for part in code.split("_"):
        m = _KNOB_RE.match(part)
        if not m:
            raise DatasetError(f"{where}: bad knob code {code!r} (expected e.g. D075_T050: a letter and 3 digits per knob)")
        value = int(m.group(2))
        if value > 100:
            raise DatasetError(f"{where}: knob {part!r} above 100 (positions are 0–10 × 10)")
        letters.append(m.group(1))
        values.append(value / 100.0)
    if len(set(letters)) != len(letters):
        raise DatasetError(f"{where}: knob code {code!r} repeats a letter")
    return tuple(letters), tuple(values)


def _strip_suffix(path: Path, kind: str) -> str | None:
    """``"<name>.input.flac"`` → ``"<name>"`` (kind = "input" or "target"), else None."""
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return None
    stem = path.name[: -len(path.suffix)]
    tail = "." + kind
    return stem[: -len(tail)] if stem.endswith(tail) else None


def _dry_files(root: Path, dry_dir: str, split: str) -> dict[str, Path]:
    folder = root / dry_dir / split
    if not folder.is_dir():
        raise DatasetError(f"{folder}: dry folder not found (data missing? run `dvc pull`)")
    files = {}
    for p in sorted(folder.iterdir()):
        name = _strip_suffix(p, "input")
        if name is not None:
            if name in files:
                raise DatasetError(f"{p}: duplicate dry passage {name!r} ({files[name].name})")
            files[name] = p
    if not files:
        raise DatasetError(f"{folder}: no *.input.wav / *.input.flac files")
    return files


def scan_device(root: str | Path, device: str, dry_dir: str = "DRY-with-markers") -> list[Pair]:
    """List every dry/wet pair of ``device``, checking names and knob codes (not audio content)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (run `dvc pull`)")
    dev_dir = root / device
    if not dev_dir.is_dir():
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != dry_dir and not p.name.startswith("."))
        raise DatasetError(f"{dev_dir}: device folder not found; devices here: {', '.join(known) or 'none'}")
    pairs: list[Pair] = []
    letters_seen: tuple[str, ...] | None = None
    for split in SPLITS:
        dry = _dry_files(root, dry_dir, split)
        split_dir = dev_dir / split
        if not split_dir.is_dir():
            raise DatasetError(f"{split_dir}: split folder not found")
        # wet files either in <KNOBS>/ subfolders or (no knobs) directly in the split folder
        candidates = [(p, "") for p in sorted(split_dir.iterdir()) if p.is_file()]
        for sub in sorted(p for p in split_dir.iterdir() if p.is_dir()):
            candidates += [(p, sub.name) for p in sorted(sub.iterdir()) if p.is_file()]
        for path, folder_code in candidates:
            stem = _strip_suffix(path, "target")
            if stem is None:
                continue
            code, _, name = stem.partition(".") if folder_code else ("", "", stem)
            if folder_code and code != folder_code:
                raise DatasetError(f"{path}: knob code {code!r} differs from its folder {folder_code!r}")
            letters, values = parse_knob_code(code, path)
            if letters_seen is None:
                letters_seen = letters
            elif letters != letters_seen:
                raise DatasetError(f"{path}: knobs {''.join(letters) or 'none'} differ from the device's {''.join(letters_seen) or 'none'}")
            if name not in dry:
                raise DatasetError(f"{path}: no dry file {name}.input.* in {root / dry_dir / split}")
            pairs.append(Pair(split, name, dry[name], path, code, letters, values))
        if not any(p.split == split for p in pairs):
            raise DatasetError(f"{split_dir}: no *.target.wav / *.target.flac files")
    return pairs
