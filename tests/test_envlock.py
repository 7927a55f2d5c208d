"""The environment is the lock: installed packages equal uv.lock, torch/torchaudio/torchvision exact."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from nablafx.envlock import lock_differences, locked_versions

ROOT = Path(__file__).resolve().parents[1]

TINY_LOCK = """
version = 1
requires-python = "==3.11.*"

[[package]]
name = "proj"
version = "0.1.0"
source = { editable = "." }
dependencies = [
    { name = "alpha" },
    { name = "winonly", marker = "sys_platform == 'win32'" },
    { name = "beta", extra = ["fast"] },
]

[package.optional-dependencies]
dev = [{ name = "gamma" }]

[[package]]
name = "alpha"
version = "1.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "beta"
version = "2.0"
source = { registry = "https://pypi.org/simple" }

[package.optional-dependencies]
fast = [{ name = "delta" }]

[[package]]
name = "delta"
version = "4.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "gamma"
version = "3.0"
source = { registry = "https://pypi.org/simple" }

[[package]]
name = "winonly"
version = "9.9"
source = { registry = "https://pypi.org/simple" }
"""


def test_installed_packages_equal_the_lock():
    diffs = lock_differences(ROOT / "uv.lock")
    assert not diffs, "installed packages differ from uv.lock (run `make install`):\n" + "\n".join(diffs)


def test_torch_family_pinned_exactly_and_together():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {d.split("==")[0]: d.split("==")[1] for d in deps if "==" in d}
    assert pins["torch"] == "2.11.0" and pins["torchaudio"] == "2.11.0" and pins["torchvision"] == "0.26.0"
    locked = locked_versions(ROOT / "uv.lock")
    assert (locked["torch"], locked["torchaudio"], locked["torchvision"]) == ("2.11.0", "2.11.0", "0.26.0")


def test_every_lock_entry_has_hashes():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    for pkg in lock["package"]:
        if "registry" not in pkg.get("source", {}):
            continue
        files = pkg.get("wheels", []) + ([pkg["sdist"]] if "sdist" in pkg else [])
        assert files and all(f.get("hash", "").startswith("sha256:") for f in files), pkg["name"]


def test_walk_follows_markers_and_extras(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text(TINY_LOCK)
    linux = {"sys_platform": "linux"}
    assert locked_versions(lock, "proj", (), env=linux) == {"proj": "0.1.0", "alpha": "1.0", "beta": "2.0",
                                                            "delta": "4.0"}
    assert "gamma" in locked_versions(lock, "proj", ("dev",), env=linux)
    assert "winonly" in locked_versions(lock, "proj", (), env={"sys_platform": "win32"})


def test_differences_name_the_package_and_both_versions(tmp_path):
    lock = tmp_path / "uv.lock"
    lock.write_text(TINY_LOCK)
    installed = {"proj": "0.1.0", "Alpha": "1.1", "beta": "2.0", "extra_pkg": "0.3"}
    diffs = lock_differences(lock, installed, project="proj", extras=("dev",))
    assert "alpha: locked 1.0, installed 1.1" in diffs
    assert "delta: locked 4.0, not installed" in diffs
    assert "gamma: locked 3.0, not installed" in diffs
    assert "extra-pkg: installed 0.3, not in uv.lock" in diffs
    assert not any(d.startswith(("proj", "beta", "winonly")) for d in diffs)


def test_unreadable_lock_names_the_file(tmp_path):
    bad = tmp_path / "uv.lock"
    bad.write_text("[[package]\n")
    with pytest.raises(ValueError, match=r"uv\.lock: cannot read the lock"):
        locked_versions(bad)
