"""The ToneTwist AFx layout.

```
<root>/<dry_dir>/{trainval,test}/<name>.input.{wav,flac}
<root>/<Device>/{trainval,test}/<KNOBS>/<KNOBS>.<name>.target.{wav,flac}
```
``<KNOBS>`` is one capital letter and three digits per knob, joined by ``_``
(``D075_T050``); the digits are the knob position on a 0–10 scale × 10, so value/100 ∈ [0, 1].
A device without knobs may put its targets directly under ``{trainval,test}/``.

What the scan refuses (:class:`DatasetError` naming the file or folder) and what it ignores:

* refused: a broken symbolic link (dangling or a loop); a dataset-named file in a format nablafx
  does not read (``x.target.mp3``, ``x.input.aiff``); a knob-setting folder (named like a knob
  code) without targets — e.g. a setting whose trainval folder is empty; a target whose name
  lacks or contradicts its folder's knob code; knob letters that differ between files; two
  targets for one passage and setting (``.wav`` and ``.flac``); a target without a dry file;
  a split without targets;
* ignored, each listed in :attr:`Layout.ignored` with the reason (prepare writes them to its
  report and prints one warning): hidden files and folders (``.DS_Store``, ``._x.target.wav``
  AppleDouble files, ``.git``), files that are not ``*.input.*`` / ``*.target.*`` audio
  (``README.txt``, ``notes.wav``), folders nested below a knob-setting folder, and folders whose
  name is not a knob code and hold no targets (``__MACOSX``);
* warned (:attr:`Layout.warnings`): a setting with test targets but none in trainval (tested on a
  setting it never trained on), a setting missing passages the others have, a dry passage no
  target uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from nablafx.data.audio import AUDIO_SUFFIXES, OTHER_AUDIO_SUFFIXES, DatasetError

SPLITS = ("trainval", "test")
_KNOB_RE = re.compile(r"^([A-Z])([0-9]{3})$")  # ASCII digits only (\d matches any script's digits)


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


@dataclass
class Layout:
    """One device's pairs plus what the scan skipped (``(path, reason)``) or found worth a warning."""

    pairs: list[Pair]
    ignored: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _strip_suffix(path: Path, kind: str) -> str | None:
    """``"<name>.input.flac"`` → ``"<name>"`` (kind = "input" or "target"), else None."""
    if path.suffix.lower() not in AUDIO_SUFFIXES:
        return None
    stem = path.name[: -len(path.suffix)]
    tail = "." + kind
    return stem[: -len(tail)] if stem.endswith(tail) and len(stem) > len(tail) else None


def _entries(folder: Path, ignored: list) -> tuple[list[Path], list[Path]]:
    """``(files, folders)`` in ``folder``, sorted; hidden entries are ignored, broken links refused."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as err:
        raise DatasetError(f"{folder}: cannot list the folder ({err.strerror or err})") from err
    files, folders = [], []
    for p in entries:
        if p.name.startswith("."):
            ignored.append((str(p), "hidden"))
        elif p.is_symlink() and not p.exists():
            raise DatasetError(f"{p}: broken symbolic link (dangling, or a loop): point it at the file or remove it")
        elif p.is_dir():
            folders.append(p)
        elif p.is_file():
            files.append(p)
        else:
            ignored.append((str(p), "not a regular file"))
    return files, folders


def _audio_name(path: Path, kind: str, ignored: list) -> str | None:
    """The passage part of a ``*.<kind>.wav|flac`` name; other audio formats named like dataset
    files are refused, anything else is ignored (and listed)."""
    name = _strip_suffix(path, kind)
    if name is not None:
        return name
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    if path.suffix.lower() in OTHER_AUDIO_SUFFIXES and stem.endswith("." + kind):
        raise DatasetError(f"{path}: {path.suffix} files are not read: convert it to WAV or FLAC "
                           f"(e.g. `sox '{path.name}' '{stem}.flac'`)")
    ignored.append((str(path), f"not a *.{kind}.wav / *.{kind}.flac file"))
    return None


def _dry_files(root: Path, dry_dir: str, split: str, ignored: list) -> dict[str, Path]:
    folder = root / dry_dir / split
    if not folder.is_dir():
        raise DatasetError(f"{_existing(folder)}: dry folder {folder.relative_to(root)}/ not found "
                           f"(data missing? run `dvc pull`)")
    files, folders = _entries(folder, ignored)
    ignored.extend((str(d), "folder inside a dry split folder") for d in folders)
    found: dict[str, Path] = {}
    for p in files:
        name = _audio_name(p, "input", ignored)
        if name is not None:
            if name in found:
                raise DatasetError(f"{p}: duplicate dry passage {name!r} ({found[name].name}): keep one of the two")
            found[name] = p
    if not found:
        raise DatasetError(f"{folder}: no *.input.wav / *.input.flac files")
    return found


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (errors name a path that is there to look at)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def _is_knob_code(name: str) -> bool:
    return all(_KNOB_RE.match(part) for part in name.split("_"))


def scan_layout(root: str | Path, device: str, dry_dir: str = "DRY-with-markers") -> Layout:
    """Every dry/wet pair of ``device`` with the files skipped and the layout warnings (names and
    knob codes only: audio content is :mod:`nablafx.data.prepare`'s business)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (run `dvc pull`)")
    dev_dir = root / device
    if not dev_dir.is_dir():
        if dev_dir.is_symlink():
            raise DatasetError(f"{dev_dir}: broken symbolic link (dangling, or a loop): point it at the device folder")
        known = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name != dry_dir and not p.name.startswith("."))
        raise DatasetError(f"{dev_dir}: device folder not found; devices here: {', '.join(known) or 'none'}")
    layout = Layout(pairs=[])
    ignored, pairs = layout.ignored, layout.pairs
    letters_seen: tuple[str, ...] | None = None
    seen: dict[tuple[str, str, str], Path] = {}
    passages: dict[str, dict[str, set[str]]] = {}  # split → knob code → passages
    dry_by_split = {}
    for split in SPLITS:
        dry = dry_by_split[split] = _dry_files(root, dry_dir, split, ignored)
        split_dir = dev_dir / split
        if not split_dir.is_dir():
            raise DatasetError(f"{dev_dir}: split folder {split}/ not found (a device has trainval/ and test/)")
        # wet files either in <KNOBS>/ subfolders or (no knobs) directly in the split folder
        files, folders = _entries(split_dir, ignored)
        candidates = [(p, "") for p in files if _audio_name(p, "target", ignored) is not None]
        for sub in folders:
            sub_files, sub_folders = _entries(sub, ignored)
            ignored.extend((str(d), "folder nested inside a knob-setting folder") for d in sub_folders)
            targets = [p for p in sub_files if _audio_name(p, "target", ignored) is not None]
            if not targets:
                if _is_knob_code(sub.name):
                    raise DatasetError(f"{sub}: knob-setting folder holds no *.target.wav / *.target.flac files: "
                                       f"add its targets or remove the folder")
                ignored.append((str(sub), "folder without targets whose name is not a knob code"))
            candidates += [(p, sub.name) for p in targets]
        for path, folder_code in candidates:
            stem = _strip_suffix(path, "target")
            if stem is None:
                continue
            if folder_code:
                code, dot, name = stem.partition(".")
                if not dot or not name:
                    raise DatasetError(f"{path}: name lacks its knob code: expected {folder_code}.<passage>.target{path.suffix}")
                if code != folder_code:
                    raise DatasetError(f"{path}: knob code {code!r} differs from its folder {folder_code!r}: "
                                       f"rename the file or move it to {folder_code if not _is_knob_code(code) else code}/")
            else:
                code, name = "", stem
            letters, values = parse_knob_code(code, path)
            if letters_seen is None:
                letters_seen = letters
            elif letters != letters_seen:
                raise DatasetError(f"{path}: knobs {''.join(letters) or 'none'} differ from the device's "
                                   f"{''.join(letters_seen) or 'none'}: every file of a device codes the same knobs in the same order")
            if name not in dry:
                raise DatasetError(f"{path}: no dry file {name}.input.* in {root / dry_dir / split}")
            key = (split, code, name)
            if key in seen:
                raise DatasetError(f"{path}: second target for passage {name!r} at setting {code or '(none)'} "
                                   f"({seen[key].name}): keep one of the two")
            seen[key] = path
            passages.setdefault(split, {}).setdefault(code, set()).add(name)
            pairs.append(Pair(split, name, dry[name], path, code, letters, values))
        if not any(p.split == split for p in pairs):
            raise DatasetError(f"{split_dir}: no *.target.wav / *.target.flac files")
    _layout_warnings(layout, dev_dir, passages, dry_by_split)
    return layout


def _layout_warnings(layout: Layout, dev_dir: Path, passages: dict, dry_by_split: dict) -> None:
    untrained = sorted(set(passages["test"]) - set(passages["trainval"]))
    if untrained:
        layout.warnings.append(f"{dev_dir}: setting(s) {', '.join(untrained)} have test targets but no trainval "
                               f"targets: the model is tested on settings it never trained on")
    for split, by_code in passages.items():
        every = set().union(*by_code.values())
        for code, names in sorted(by_code.items()):
            if names != every:
                missing = ", ".join(sorted(every - names))
                layout.warnings.append(f"{dev_dir / split / code if code else dev_dir / split}: lacks passage(s) "
                                       f"{missing} that other settings have")
        unused = sorted(set(dry_by_split[split]) - every)
        if unused:
            layout.warnings.append(f"{dev_dir / split}: no target for dry passage(s) {', '.join(unused)} (unused)")
    layout.ignored.sort()


def scan_device(root: str | Path, device: str, dry_dir: str = "DRY-with-markers") -> list[Pair]:
    """List every dry/wet pair of ``device``, checking names and knob codes (not audio content)."""
    return scan_layout(root, device, dry_dir).pairs
