"""The command-line reference page (``docs/cli.md``), generated from the argparse parser
so that it cannot drift: ``make docs`` rewrites it and a test compares the two."""

from __future__ import annotations

import argparse
import os
from contextlib import contextmanager

WIDTH = "100"  # the help text's width, fixed so that the page is the same everywhere


@contextmanager
def _columns(width: str):
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = width
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def cli_reference() -> str:
    from spikebench.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    parts = ["# Command line", "",
             "Generated from the parser (`make docs`; `tests/test_docs.py` fails when this "
             "page and `spikebench --help` differ). Experiment files (`--config`): "
             "[concepts](concepts.md#experiment-files).", ""]
    with _columns(WIDTH):
        parts += ["## spikebench", "", "```", parser.format_help().rstrip(), "```", ""]
        for name, command in sub.choices.items():
            parts += [f"## spikebench {name}", "", "```", command.format_help().rstrip(),
                      "```", ""]
    return "\n".join(parts)


if __name__ == "__main__":
    import sys

    sys.stdout.write(cli_reference())
