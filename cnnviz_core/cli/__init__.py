"""Command line interface: ``python -m cnnviz_core COMMAND ...``.

Each subcommand lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` to a callable taking the parsed ``argparse.Namespace`` and returning
an exit code. Errors of the engine (:class:`cnnviz_core.errors.CnnvizError`) and bad arguments give
one line on stderr and a non-zero exit code, never a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from ..errors import CnnvizError, one_line

#: Modules of this package that define subcommands, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "models_cmd",
    "predict_cmd",
    "scenes_cmd",
    "explain_cmd",
    "visualize_cmd",
    "audit_cmd",
    "project_cmd", "topact_cmd", "methods_cmd",
)


class _OneLineParser(argparse.ArgumentParser):
    """argparse prints usage plus a message on errors; we print one line and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        prog = self.prog
        sys.stderr.write(f"{prog}: error: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _OneLineParser(prog="python -m cnnviz_core", description="cnnviz engine command line")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:  # a command whose module is not written yet
            if exc.name == f"{__name__}.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnnvizError as exc:
        sys.stderr.write(f"error: {one_line(str(exc))}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"error: {type(exc).__name__}: {one_line(str(exc))}\n")
        return 1
