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

def parse_input_shape(text: str) -> tuple[int, int, int]:
    """argparse type for --input-shape: "28,28,1", "28x28x1", or "28,28" (one channel)."""
    parts = text.lower().replace("x", ",").split(",")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH,CHANNELS such as 28,28,1") from None
    if len(sizes) == 2:
        sizes.append(1)
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three positive integers HEIGHT,WIDTH,CHANNELS such as "
                                         "28,28,1")
    return (sizes[0], sizes[1], sizes[2])


def parse_class_count(text: str) -> int:
    """argparse type for --classes: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of classes such as 10") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: expected at least 1 class")
    return value


def add_summary_parser(subparsers) -> None:
    from convolab.spec import GRAMMAR

    parser = subparsers.add_parser(
        "summary", help="Keras's model summary, with why each shape and parameter count is what it is",
        description="Print Keras's summary of MODEL (Layer (type), Output Shape, Param #, totals) and, under each row, "
                    "the arithmetic behind it, plus multiply-adds, activation memory and receptive field per layer.\n\n"
                    + GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a preset (cnn, dnn, ...), a .yaml/.yml/.json file, or a "
                                                       "one-line model such as conv64x3,pool2,flatten,dense128,dense10")
    parser.add_argument("--input-shape", type=parse_input_shape, default=None, metavar="H,W,C",
                        help="input image shape (default: the model's own, else 28,28,1 as Fashion-MNIST)")
    parser.add_argument("--classes", type=parse_class_count, default=None, metavar="N",
                        help="class count: sizes a last `dense` without units and must match the model's output "
                             "(default: 10, as Fashion-MNIST, for a `dense` without units; otherwise unchecked)")
    parser.add_argument("--format", choices=("text", "markdown", "json"), default="text",
                        help="output format (default text)")


def run_summary(args: argparse.Namespace) -> int:
    from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, Dense, load_spec
    from convolab.summary import summarize

    spec = load_spec(args.model)
    input_shape = args.input_shape if args.input_shape or spec.input_shape else DEFAULT_INPUT_SHAPE
    num_classes = args.classes
    if num_classes is None and any(isinstance(layer, Dense) and layer.units is None for layer in spec.layers):
        num_classes = DEFAULT_NUM_CLASSES
    sys.stdout.write(summarize(spec, input_shape, num_classes, format=args.format))
    return 0



# --- data ------------------------------------------------------------------------------------------------------------

def parse_image_size(text: str) -> tuple[int, int]:
    """argparse type for --image-size: "28,28", "28x28" or "28" (square)."""
    parts = text.replace("x", ",").split(",")
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH such as 28,28") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH, two positive integers such as 28,28")
    return (sizes[0], sizes[1])


def parse_fraction(text: str) -> float:
    """argparse type for a fraction in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number from 0 up to (not including) 1") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{text}: expected a fraction from 0 up to (not including) 1")
    return value


def add_data_flags(parser: argparse.ArgumentParser, positional: bool = False) -> None:
    """Add the data flags every command shares; `positional=True` takes the dataset as an argument instead of --data."""
    if positional:
        parser.add_argument("data", nargs="?", default="fashion-mnist", metavar="DATASET|PATH",
                            help="fashion-mnist (default), mnist, or a folder with one subfolder of images per class")
    else:
        parser.add_argument("--data", default="fashion-mnist", metavar="DATASET|PATH",
                            help="fashion-mnist (default), mnist, or a folder with one subfolder of images per class")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder holding the four IDX files, gzipped or not (default: $CONVOLAB_DATA_DIR, then "
                             "the cache, the system copy, the download)")
    parser.add_argument("--offline", action="store_true", help="never download; use only local copies")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="1 (gray) or 3 (RGB) (default: the data's own)")
    parser.add_argument("--image-size", type=parse_image_size, default=None, metavar="H,W",
                        help="fit images into H,W, aspect kept and padded (default: the data's own; 28,28 for folders)")
    parser.add_argument("--test-split", type=parse_fraction, default=0.2, metavar="F",
                        help="image folders without train/ and test/: fraction of each class held out for test "
                             "(default 0.2, fixed seed)")


def data_options(args: argparse.Namespace) -> dict:
    """load_dataset keyword arguments from the flags add_data_flags declared."""
    return {
        "source": args.data,
        "data_dir": args.data_dir,
        "offline": args.offline,
        "channels": args.channels,
        "image_size": args.image_size,
        "test_split": args.test_split,
        "seed": getattr(args, "seed", None) or 0,
    }


def add_data_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="find a dataset, verify it, count it, draw samples",
        description="Find a dataset (or say every place looked and how to get it), verify its checksums, count images "
                    "per split and class, and optionally draw samples of every class.",
    )
    add_data_flags(parser, positional=True)
    parser.add_argument("--grid", metavar="FILE.png", default=None, help="write a picture of samples per class")
    parser.add_argument("--per-class", type=int, default=8, metavar="N", help="samples per class in --grid (default 8)")


def run_data(args: argparse.Namespace) -> int:
    from convolab.data import describe_dataset, load_dataset, save_sample_grid

    dataset = load_dataset(**data_options(args))
    print(describe_dataset(dataset))
    if args.grid:
        path = save_sample_grid(dataset, args.grid, per_class=max(1, args.per_class))
        print(f"grid: wrote {path}")
    return 0


# --- train, evaluate, predict, compare, lab --------------------------------------------------------------------------


# --- show, filters, sweep, report ------------------------------------------------------------------------------------


# --- entry point -----------------------------------------------------------------------------------------------------

# (name, add_parser, run) for every subcommand, in the order --help lists them.
COMMANDS: list[tuple[str, object, object]] = [
    ("summary", add_summary_parser, run_summary),
    ("data", add_data_parser, run_data),
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
