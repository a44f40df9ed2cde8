"""Experiment files: ``spikebench run --config FILE.toml``.

A file holds the same fields as the run command's flags, under their long names (``-`` or
``_``: ``n-train`` or ``n_train``; ``steps`` for ``--steps``), the suite as ``suite``, and
the repeatable ``KEY=VALUE`` options as tables (``[rule-option]``, ``[neuron-option]``).
Flags given on the command line override the file. ``resolved_toml`` writes the
configuration a command ran with, which reads back as the same configuration. Only the
standard library: this module is imported before anything heavy.
"""

from __future__ import annotations

import argparse
import json
import math
import tomllib
from pathlib import Path

from spikebench.errors import ConfigError

# run options that are about this invocation, not the experiment
NOT_IN_FILES = ("help", "verbose", "config", "print_config")


def _fields(run: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """The run command's fields by file key (its long option name without ``--``)."""
    out = {}
    for action in run._actions:
        if action.dest in NOT_IN_FILES:
            continue
        longs = [o for o in action.option_strings if o.startswith("--")]
        out[longs[0][2:] if longs else action.dest] = action
    return out


def _convert(key: str, value, action: argparse.Action, where: str):
    def bad(what: str):
        return ConfigError(f"{where}: {key} must be {what}, got {value!r}")

    if isinstance(action, argparse._StoreTrueAction):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(action, argparse._AppendAction):  # KEY=VALUE options: a table
        if not isinstance(value, dict):
            raise bad(f"a table, e.g. [{key}] with lines name = value")
        return [(str(k), v) for k, v in value.items()]
    kind = action.type
    if action.nargs == "+":  # --seeds
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise bad("a list of integers")
        return list(items)
    if kind is not None and getattr(kind, "__name__", "") == "_csv":  # --rules, --archs
        if isinstance(value, str):
            return kind(value)
        if not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise bad("a list of names")
        return list(value)
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("an integer")
    elif kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not math.isfinite(value):
            raise bad("a finite number")
        value = float(value)
    elif not isinstance(value, str):
        raise bad("a string")
    if action.choices is not None and value not in action.choices:
        raise bad(f"one of {', '.join(map(str, action.choices))}")
    return Path(value) if kind is Path else value


def load_config(path: Path, run: argparse.ArgumentParser) -> dict[str, object]:
    """The file's fields as the run parser's defaults (``{dest: value}``); a missing or
    malformed file, an unknown key or a wrong type is a one-line ``ConfigError``."""
    where = f"--config {path}"
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file; give the path of a TOML file") from None
    except IsADirectoryError:
        raise ConfigError(f"{where} is a folder; give the path of a TOML file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{where}: cannot read it ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{where} is not valid TOML: {err}") from None
    fields = _fields(run)
    by_name = {**{a.dest: k for k, a in fields.items()}, **{k: k for k in fields}}
    values = {}
    for raw, value in data.items():
        key = by_name.get(raw) or by_name.get(raw.replace("_", "-")) or \
            by_name.get(raw.replace("-", "_"))
        if key is None:
            raise ConfigError(f"{where}: unknown key {raw!r}; known keys: "
                              f"{', '.join(sorted(fields))}")
        values[fields[key].dest] = _convert(key, value, fields[key], where)
    return values


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a TOML basic string


def resolved_toml(args: argparse.Namespace, run: argparse.ArgumentParser) -> str:
    """The run command's resolved fields (file and flags) as TOML: every field that is set
    (not None, not off, not empty), in the order of ``spikebench run --help``."""
    lines, tables = [], []
    for key, action in _fields(run).items():
        value = getattr(args, action.dest, None)
        if value is None or value is False or value == [] or value == {}:
            continue
        if isinstance(action, argparse._AppendAction):
            tables += ["", f"[{key}]"] + [f"{json.dumps(k)} = {_toml_value(v)}"
                                          for k, v in dict(value).items()]
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines + tables) + "\n"
