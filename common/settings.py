"""Typed settings from flags and environment, read once at start: flags win over variables over defaults."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


def build_parser(cls: type[Any], env: Mapping[str, str], prog: str, description: str) -> argparse.ArgumentParser:
    """One `--flag-name` per setting, its help naming the variable and the default."""
    assert set(env) == {f.name for f in dataclasses.fields(cls)}, f"every {cls.__name__} setting needs a variable"
    parser = argparse.ArgumentParser(prog=prog, description=description)
    defaults = cls()
    for name, variable in env.items():
        flag = "--" + name.replace("_", "-")
        default = getattr(defaults, name)
        parser.add_argument(flag, dest=name, default=None, help=f"(env {variable}; default {default!r})")
    return parser


def load_settings(
    cls: type[T],
    env: Mapping[str, str],
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> T:
    environ = os.environ if environ is None else environ
    args = parser.parse_args(argv)
    defaults = cls()
    values: dict[str, object] = {}
    for name, variable in env.items():
        raw = getattr(args, name)
        if raw is None:
            raw = environ.get(variable)
        if raw is None:
            continue
        kind = type(getattr(defaults, name))
        try:
            values[name] = kind(raw)
        except ValueError:
            # Usage error, exit 2; the text names the setting, and a bad value is not a secret.
            parser.error(f"--{name.replace('_', '-')} / {variable}: not a valid {kind.__name__}: {raw!r}")
    return cls(**values)
