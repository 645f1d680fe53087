"""Configuration fields that describe themselves: one declaration gives the dataclass
field, its command-line flag, its ``--help`` text and its TOML type check.

Every part of the training configuration (``engine.config``) and every algorithm's
own options (``algos/<name>.py``, ``Config`` registered with the algorithm) are plain
dataclasses whose fields are made with :func:`knob`. ``engine.config.build_parser``
turns them into argparse arguments and ``engine.config.load_toml`` checks a TOML
file's values against the same declarations, so the CLI, the TOML file and the
Python API can never disagree about a setting.

This module imports nothing heavy (it is imported by ``--help``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import field
from typing import Any

__all__ = ["knob", "knobs_of", "Knob", "check_value"]


def knob(default: Any, help: str, *, metavar: str | None = None,
         choices: tuple[str, ...] | Callable[[], tuple[str, ...]] | None = None,
         kind: type | tuple[type, ...] | None = None, cli: bool = True, short: str | None = None) -> Any:
    """A dataclass field with its CLI/TOML description.

    Args:
        default: the default value (also the field's default).
        help: the ``--help`` text.
        metavar: argparse metavar.
        choices: allowed values (or a function returning them, called when the parser
            is built — registries that fill in later stay current).
        kind: the accepted Python type(s) when it cannot be read off the default
            (``None`` defaults), e.g. ``(str, int)`` for ``--memory-budget``.
        cli: False for API-only settings (no flag, no TOML key).
        short: a one-letter alias such as ``"-q"``.
    """
    if kind is None:
        kind = type(default)
    meta = {"help": help, "metavar": metavar, "choices": choices, "kind": kind, "cli": cli, "short": short}
    return field(default=default, metadata={"mpidml": meta})


class Knob:
    """A field of a config dataclass as the parser sees it."""

    def __init__(self, f: dataclasses.Field):
        meta = f.metadata.get("mpidml", {})
        self.name: str = f.name
        self.default = f.default
        self.help: str = meta.get("help", "")
        self.metavar = meta.get("metavar")
        self._choices = meta.get("choices")
        self.kind = meta.get("kind") or type(f.default)
        self.cli: bool = meta.get("cli", True)
        self.short = meta.get("short")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def choices(self) -> tuple[str, ...] | None:
        c = self._choices
        return tuple(c()) if callable(c) else (tuple(c) if c else None)

    @property
    def kinds(self) -> tuple[type, ...]:
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)


def knobs_of(cls) -> list[Knob]:
    """The fields of dataclass ``cls`` that carry a knob description, in order."""
    return [Knob(f) for f in dataclasses.fields(cls) if "mpidml" in f.metadata]


def check_value(k: Knob, value: Any, where: str) -> Any:
    """``value`` as setting ``k`` accepts it (ints are floats too), or ``ValueError``
    saying which setting, what was given and what is expected."""
    kinds = k.kinds
    ok = False
    for t in kinds:
        if t is type(None):
            ok = ok or value is None
        elif t is bool:
            ok = ok or isinstance(value, bool)
        elif t is float:
            ok = ok or (isinstance(value, (int, float)) and not isinstance(value, bool))
        elif t is int:
            ok = ok or (isinstance(value, int) and not isinstance(value, bool))
        else:
            ok = ok or isinstance(value, t)
    if not ok:
        names = " or ".join("none" if t is type(None) else t.__name__ for t in kinds)
        raise ValueError(f"{where}: {k.name.replace('_', '-')} must be {names}, got {value!r} "
                         f"({type(value).__name__})")
    if float in kinds and isinstance(value, int) and int not in kinds:
        value = float(value)
    choices = k.choices
    if choices and isinstance(value, str) and value not in choices:
        raise ValueError(f"{where}: {k.name.replace('_', '-')} must be one of {', '.join(choices)}, got {value!r}")
    return value
