"""Small shared helpers: atomic writes and safe loads (from :mod:`nablafx.fileio`), one-line errors
for stages."""

from __future__ import annotations

import sys

from nablafx.errors import ConfigError, DatasetError
from nablafx.fileio import (  # noqa: F401  (re-exported: the helpers every stage writes through)
    ArtifactError,
    CorruptFileError,
    UnsafeFileError,
    atomic_open,
    load_torch,
    replace_dir,
    save_torch,
    savefig_atomic,
    write_bytes_atomic,
    write_json,
    write_text_atomic,
)

USER_ERRORS = (DatasetError, ConfigError, ArtifactError, FileNotFoundError, FloatingPointError)


def run_stage(main, argv=None) -> int:
    """Run a stage's ``main``; user errors become one line on stderr and exit status 2."""
    try:
        main(argv)
    except USER_ERRORS as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"error: {msg}", file=sys.stderr)
        return 2
    return 0
