"""The library's user-facing errors, in one place (no nablafx imports: every layer may raise them).

* :class:`ConfigError`: a params.yaml value is malformed or names something unknown.  Its text is
  ``params.yaml: <key path>: <problem>``; code deep in a model raises it with the key path it knows
  (``channels``, ``processors[2].type``) and each caller on the way up prefixes its own part
  (:meth:`ConfigError.under`), so the message ends up naming the full path.
* :class:`DatasetError`: bad dataset content; the message starts with the offending file or folder.

Both are ``ValueError`` subclasses.  Stages print them as one line (``nablafx.utils.run_stage``);
anything else — a ``TypeError`` from a bug included — keeps its traceback.  Builders therefore
check option *names* against the signature (:func:`required_options`) before calling, and let
only ``ConfigError`` out of a constructor as a config problem.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable

PARAMS_FILE = "params.yaml"


def join_key(prefix: str | None, key: str | None) -> str | None:
    """``join_key("variants.x", "processors[2]") == "variants.x.processors[2]"``; ``[i]`` joins without a dot."""
    if not prefix:
        return key or None
    if not key:
        return prefix
    return f"{prefix}{key}" if key.startswith("[") else f"{prefix}.{key}"


def required_options(fn: Callable, skip: Iterable[str] = ()) -> list[str]:
    """Keyword parameters of ``fn`` without a default (``skip``: those the builder passes itself)."""
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.name not in skip
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


class ConfigError(ValueError):
    """A params.yaml value is malformed or names something unknown; the message names the key.

    ``ConfigError(problem, key="train.lr", file="params.yaml")`` reads ``params.yaml: train.lr: problem``.
    Model code raises ``ConfigError(problem, key="channels")`` (no file: the path is relative) and
    the registry adds the rest with :meth:`under`.  ``ConfigError(message)`` is free-form.
    """

    def __init__(self, problem: str, key: str | None = None, file: str | None = None):
        self.problem, self.key, self.file = problem, key, file
        super().__init__(": ".join(part for part in (file, key, problem) if part))

    def under(self, prefix: str | None, file: str | None = PARAMS_FILE) -> ConfigError:
        """The same problem at ``prefix.<key>`` (in ``file``), to raise one level up."""
        err = ConfigError(self.problem, join_key(prefix, self.key), file)
        err.__cause__ = self.__cause__
        return err

    def __reduce__(self):  # picklable (DDP workers, multiprocessing) with its fields
        return (ConfigError, (self.problem, self.key, self.file))


class DatasetError(ValueError):
    """Bad dataset content; the message starts with the offending file or folder."""
