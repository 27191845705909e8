"""The `convolab` command: parses arguments, calls the pipeline's stages, prints. Nothing else lives here.

Every subcommand is a pair: `add_<name>_parser(subparsers)` declares its flags, `run_<name>(args) -> int` does the work
and returns the exit status. A ConvolabError anywhere becomes a short message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from convolab import __version__
from convolab.errors import ConvolabError


# --- summary ---------------------------------------------------------------------------------------------------------


# --- data ------------------------------------------------------------------------------------------------------------


# --- train, evaluate, predict, compare, lab --------------------------------------------------------------------------


# --- show, filters, sweep, report ------------------------------------------------------------------------------------


# --- entry point -----------------------------------------------------------------------------------------------------

# (name, add_parser, run) for every subcommand, in the order --help lists them.
COMMANDS: list[tuple[str, object, object]] = [
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convolab",
        description="Build, explain, train, evaluate, see inside and compare convolutional image classifiers.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"convolab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show Python tracebacks for unexpected errors")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _name, add_parser, _run in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    run = {name: run for name, _add, run in COMMANDS}[args.command]
    try:
        return run(args)
    except ConvolabError as error:
        print(f"convolab {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"convolab {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `convolab summary cnn | head` closes our stdout early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as error:  # noqa: BLE001 - the last line of defence against a bare traceback
        if args.debug:
            traceback.print_exc()
        print(
            f"convolab {args.command}: internal error: {type(error).__name__}: {error}\n"
            "  This is a bug in convolab. Run again with --debug for the traceback and report it.",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
