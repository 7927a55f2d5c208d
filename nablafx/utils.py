"""Small shared helpers: atomic writes, one-line errors for stages."""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from nablafx.errors import ConfigError, DatasetError

USER_ERRORS = (DatasetError, ConfigError, FileNotFoundError, FloatingPointError)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write via a temporary file + rename, so a failure never leaves a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def run_stage(main, argv=None) -> int:
    """Run a stage's ``main``; user errors become one line on stderr and exit status 2."""
    try:
        main(argv)
    except USER_ERRORS as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0
