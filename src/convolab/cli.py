"""The `convolab` command: parses arguments, calls the pipeline's stages, prints. Nothing else lives here.

Every subcommand is a pair: `add_<name>_parser(subparsers)` declares its flags, `run_<name>(args) -> int` does the work
and returns the exit status. A ConvolabError anywhere becomes a short message on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import threading
import traceback
import warnings

from convolab import __version__, arguments
from convolab.errors import ConvolabError, Terminated, stop_signal, stopped_by


RUN_HELP = "a run directory (e.g. runs/cnn) or a Keras model file (.keras, or a legacy .h5) with its weights"


# --- summary ---------------------------------------------------------------------------------------------------------

def add_summary_parser(subparsers) -> None:
    from convolab.spec import GRAMMAR

    parser = subparsers.add_parser(
        "summary", help="Keras's model summary, with why each shape and parameter count is what it is",
        description="Print Keras's summary of MODEL (Layer (type), Output Shape, Param #, totals) and, under each row, "
                    "the arithmetic behind it, plus multiply-adds, activation memory and receptive field per layer.\n\n"
                    + GRAMMAR,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="a preset (cnn, dnn, the sweep's no-conv2, ...), a .yaml/.yml/"
                                                       ".json file, a run directory (runs/cnn), a Keras model file "
                                                       "(.keras, .h5), or a one-line model such as "
                                                       "conv64x3,pool2,flatten,dense128,dense10")
    parser.add_argument("--input-shape", type=arguments.input_shape, default=None, metavar="H,W,C",
                        help="input image shape (default: the model's own, else 28,28,1 as Fashion-MNIST)")
    parser.add_argument("--classes", type=arguments.CLASS_COUNT, default=None, metavar="N",
                        help="class count: sizes a last `dense` without units and must match the model's output "
                             "(default: 10, as Fashion-MNIST, for a `dense` without units; otherwise unchecked)")
    parser.add_argument("--format", choices=("text", "markdown", "json", "html"), default="text",
                        help="output format (default text)")
    parser.add_argument("--diagram", default=None, metavar="FILE.svg",
                        help="also write the architecture as an SVG picture (no Graphviz needed)")


def run_summary(args: argparse.Namespace) -> int:
    from convolab.recipes import RECIPES
    from convolab.spec import load_spec
    from convolab.summary import summarize, summary_inputs

    from pathlib import Path

    from convolab.runs import CONFIG, exists, load_run, require_suffix

    if args.diagram:   # said before anything is printed; a name without .svg may be a file of the user's
        require_suffix(args.diagram, (".svg",), "the diagram is an SVG picture", "diagram")
    config_file = Path(args.model) / CONFIG
    if exists(config_file) and config_file.is_file():   # a run directory: its model, on the data it was trained on
        run = load_run(args.model)
        spec = run.spec
        args.input_shape = args.input_shape or run.input_shape
        args.classes = args.classes or len(run.class_names)
    else:
        spec = load_spec(args.model)
    input_shape, num_classes = summary_inputs(spec, args.input_shape, args.classes)
    sys.stdout.write(summarize(spec, input_shape, num_classes, format=args.format))
    if args.model in RECIPES and args.format != "json":   # a recipe is its spec plus how it trains
        sys.stdout.write("\n" + RECIPES[args.model].describe())
    if args.diagram:
        from convolab.diagram import write_diagram

        # On stderr, so that --format json on stdout stays one JSON document.
        print(f"diagram: wrote {write_diagram(spec, input_shape, num_classes, args.diagram)}", file=sys.stderr)
    return 0


# --- data ------------------------------------------------------------------------------------------------------------

def add_data_flags(parser: argparse.ArgumentParser, positional: bool = False, for_run: bool = False) -> None:
    """Add the data flags every command shares; `positional=True` takes the dataset as an argument instead of --data;
    `for_run`: a command that reads a run, whose data is by default the run's own (evaluate)."""
    data_help = ("default: the data the run trained on; or fashion-mnist, mnist, or a folder with one subfolder of "
                 "images per class" if for_run else
                 "fashion-mnist (default), mnist, or a folder with one subfolder of images per class")
    if positional:
        parser.add_argument("data", nargs="?", default="fashion-mnist", metavar="DATASET|PATH", help=data_help)
    else:
        parser.add_argument("--data", default=None if for_run else "fashion-mnist", metavar="DATASET|PATH",
                            help=data_help)
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder holding the four IDX files, gzipped or not (default: $CONVOLAB_DATA_DIR, then "
                             "the cache, the system copy, the download)")
    parser.add_argument("--offline", action="store_true", help="never download; use only local copies")
    parser.add_argument("--channels", type=arguments.COUNT, choices=(1, 3), default=None,
                        help="1 (gray) or 3 (RGB) (default: " + ("the model's" if for_run else "the data's own") + ")")
    parser.add_argument("--image-size", type=arguments.image_size, default=None, metavar="H,W",
                        help="fit images into H,W, aspect kept and padded (default: " +
                             ("the model's input size" if for_run else "the data's own; 28,28 for folders") + ")")
    parser.add_argument("--test-split", type=arguments.FRACTION, default=None if for_run else 0.2, metavar="F",
                        help="image folders without train/ and test/: the fraction of each class to measure (fixed "
                             "seed); default: the run's own folder's test split as it trained, every image of another "
                             "folder; 0: every image" if for_run else
                             "image folders without train/ and test/: fraction of each class held out for test "
                             "(default 0.2, fixed seed)")
    parser.add_argument("--stream", action="store_const", const=True, default=None,
                        help="image folders: keep the images on disk, decoded once by worker processes into a resized "
                             "cache and read batch by batch (default: only when the decoded folder exceeds "
                             "$CONVOLAB_MEMORY_BUDGET, a quarter of the memory unless set)")


def data_options(args: argparse.Namespace) -> dict:
    """load_dataset keyword arguments from the flags add_data_flags declared. A folder of images is recorded by its
    absolute path: the run finds it again from any folder (evaluate, show, --resume)."""
    from convolab.data.load import source_to_record

    return {
        "source": None if args.data is None else source_to_record(args.data),
        "data_dir": args.data_dir,
        "offline": args.offline,
        "channels": args.channels,
        "image_size": args.image_size,
        "test_split": args.test_split,
        "seed": getattr(args, "seed", None) or 0,
        **({"stream": True} if getattr(args, "stream", None) else {}),   # recorded only when asked: resume streams too
    }


def add_data_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="find a dataset, verify it, count it, draw samples",
        description="Find a dataset (or say every place looked and how to get it), verify its checksums, count images "
                    "per split and class, and optionally draw samples of every class.",
    )
    add_data_flags(parser, positional=True)
    parser.add_argument("--grid", metavar="FILE.png", default=None, help="write a picture of samples per class")
    parser.add_argument("--per-class", type=arguments.COUNT, default=8, metavar="N",
                        help="samples per class in --grid (default 8, at most 32)")


def run_data(args: argparse.Namespace) -> int:
    from convolab.data import describe_dataset, load_dataset

    if args.grid:
        from convolab.plots import check_grid_size, picture_format, save_sample_grid

        check_grid_size(args.per_class)   # before the data loads: a refusal costs nothing
        picture_format(args.grid)
    dataset = load_dataset(**data_options(args))
    print(describe_dataset(dataset))
    if args.grid:
        print(f"grid: wrote {save_sample_grid(dataset, args.grid, per_class=args.per_class)}")
    return 0


# --- train, evaluate, predict, compare, lab --------------------------------------------------------------------------

def add_training_flags(parser: argparse.ArgumentParser, epochs: int = 5) -> None:
    """The hyperparameter flags, one per TrainConfig field, with the lab's defaults."""
    from convolab.train import DEVICES, OPTIMIZERS

    parser.add_argument("--epochs", type=arguments.COUNT, default=epochs, help=f"passes over the data (default {epochs})")
    parser.add_argument("--batch-size", type=arguments.COUNT, default=32, help="images per step (default 32, Keras's)")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="adam", help="default adam, as in the lab")
    parser.add_argument("--learning-rate", type=arguments.POSITIVE, default=0.001, help="default 0.001 (Keras's Adam)")
    parser.add_argument("--validation-split", type=arguments.FRACTION, default=0.0, metavar="F",
                        help="hold out the last fraction F of the training images for validation, as Keras (default 0)")
    parser.add_argument("--seed", type=arguments.SEED, default=0, help="seeds the weights and the shuffle order (default 0)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="auto: cuda, then mps, then cpu (default auto)")
    parser.add_argument("--engine", choices=("fast", "reference"), default="fast",
                        help="fast: the same network and weights through faster kernels (engine.py); reference: "
                             "model.py's plain layers (default fast)")
    parser.add_argument("--threads", type=arguments.threads, default="all", metavar="all|N",
                        help="CPU threads: all (default: one per usable core) or N. The fast engine cuts each batch "
                             "into that many single-threaded shards, so a busy core slows training by a fair share, "
                             "and the same seed gives the same weights however many threads the shards got")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="bf16: bfloat16 autocast (fast engine; float32 weights and logits), faster on CPUs with "
                             "AMX or AVX512-BF16 and on GPUs; fp32: float32 throughout; auto (default): bf16 on a GPU "
                             "that has it, fp32 on CPU (runs repeat bit for bit; `train --recipe fast` and best "
                             "choose bf16 on CPUs with AMX or AVX512-BF16)")
    parser.add_argument("--train-limit", type=arguments.COUNT, default=None, metavar="N",
                        help="use only the first N training images (quick tries)")
    parser.add_argument("--test-limit", type=arguments.COUNT, default=None, metavar="N",
                        help="test on the first N test images only")
    parser.add_argument("--quiet", action="store_true", help="print only the final results")


def train_config(args: argparse.Namespace):
    from convolab.train import TrainConfig

    return TrainConfig(epochs=args.epochs or 5, batch_size=args.batch_size, optimizer=args.optimizer,
                       learning_rate=args.learning_rate, validation_split=args.validation_split, seed=args.seed,
                       device=args.device, engine=getattr(args, "engine", "fast"),
                       threads=getattr(args, "threads", "all"), precision=getattr(args, "precision", "auto"))


def progress_for(args: argparse.Namespace):
    from convolab.train import make_progress

    return make_progress("quiet" if getattr(args, "quiet", False) else "auto")


def add_train_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "train", help="train a model: progress bar, one line per epoch, test accuracy; a run directory",
        description="Train MODEL (a preset such as cnn, a .yaml/.json spec, or a one-line spec) on a dataset with the "
                    "lab's defaults (Adam 0.001, batch 32, sparse categorical cross-entropy, 5 epochs). Writes a run "
                    "directory (config, history, checkpoints, test metrics). Ctrl-C saves a checkpoint that --resume "
                    "continues.",
    )
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="preset (dnn, cnn, ...), spec file, one-line spec, or a Keras model file (.keras, .h5: "
                             "training continues from its weights); not needed with --resume RUN")
    add_data_flags(parser)
    add_training_flags(parser)
    parser.set_defaults(epochs=None)   # None: 5 for a new run, the run's own for --resume
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="run directory (default runs/MODEL, or runs/MODEL-2, ... if that holds a run)")
    parser.add_argument("--recipe", choices=("fast", "best"), default=None,
                        help="train a time-to-accuracy recipe instead of MODEL: its spec, epochs, batch size, "
                             "optimizer, learning-rate schedule and augmentation (see `convolab summary fast`); "
                             "--epochs, --seed, --device, --engine, --precision and the data flags still apply (the "
                             "recipes train in bf16 on CPUs with AMX or AVX512-BF16 unless --precision says otherwise)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    parser.add_argument("--resume", nargs="?", const=True, default=None, metavar="RUN",
                        help="continue a stopped run (RUN, or --out) from its checkpoint with the settings its "
                             "config.json records (flags that would change them are refused); --epochs N trains to N "
                             "in all")
    parser.add_argument("--stop-at", default=None, metavar="TARGET",
                        help='stop when an epoch reaches TARGET, e.g. "accuracy>=0.998" (acc is accepted)')
    parser.add_argument("--early-stopping", type=arguments.COUNT, default=None, metavar="PATIENCE",
                        help="stop when val_loss has not improved for PATIENCE epochs and restore the best weights "
                             "(needs --validation-split)")
    parser.add_argument("--nproc", type=arguments.COUNT, default=None, metavar="N",
                        help="train in N processes on this machine with DistributedDataParallel, started through "
                             "torchrun (gloo on CPU, NCCL on CUDA); --batch-size is the global batch, divided among "
                             "them. Several machines: torchrun --nnodes ... -m convolab train ... (README)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also write TensorBoard event files into the run: scalars per epoch and every 100 steps, "
                             "weight histograms, the activation grid and confusion matrix, the hyperparameters with "
                             "the final metrics (needs: pip install \"convolab[tensorboard]\"); then "
                             "tensorboard --logdir runs")


def suggest_precision(config, quiet: bool) -> None:
    """One line on stderr when a float32 CPU run could use the CPU's bfloat16 hardware (never switched on by itself)."""
    from convolab.machine import cpu_flags, precision_hint
    from convolab.train import choose_device

    hint = None if quiet else precision_hint(choose_device(config.device), config.precision, cpu_flags())
    if hint:
        print(f"note: {hint}", file=sys.stderr)


def run_train(args: argparse.Namespace) -> int:
    """One process, or `--nproc N` processes through torchrun, or one rank of a job torchrun started."""
    from convolab import distributed
    from convolab.train import TrainingInterrupted

    context = distributed.context_from_environment()
    if args.nproc is not None:
        if context is not None:
            raise ConvolabError("--nproc inside a job torchrun started; expected one or the other",
                                fix="drop --nproc (torchrun already chose the processes), or run without torchrun")
        return distributed.launch(args.argv, args.nproc, run_dir=train_target(args))
    if context is None:
        return train_in_this_process(args, context)
    distributed.start(context, args.device)
    try:
        return train_in_this_process(args, context)
    except TrainingInterrupted:
        if context.is_main:
            raise
        return TrainingInterrupted.exit_code   # rank 0 says where the checkpoint is; the others stopped with it
    except RuntimeError as error:   # a collective failed: a peer died or timed out; say so instead of a traceback
        raise distributed.DistributedJobFailed(
            f"rank {context.rank}: another process of the job stopped, so this one stops too "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})",
            fix="see the first error above; the last checkpoint rank 0 wrote is kept, and --resume continues it") from None
    finally:
        distributed.stop()


def train_target(args: argparse.Namespace):
    """The run directory `train` writes or resumes, when the flags name it (for messages about its checkpoint)."""
    from pathlib import Path

    target = args.resume if isinstance(args.resume, str) else args.out
    return Path(target) if target else None


def train_in_this_process(args: argparse.Namespace, context) -> int:
    """A new or resumed run in this process (in a torchrun job: this rank's part of it)."""
    from convolab.experiment import new_run, resume_run
    from convolab.train import make_progress

    main_process = context is None or context.is_main
    progress = progress_for(args) if main_process else make_progress("quiet")   # rank 0 speaks for the job
    if args.tensorboard:
        from convolab.tensorboard import require_tensorboard

        require_tensorboard()   # before any data is loaded or anything is written
    if args.resume is not None:
        refuse_settings_a_resume_ignores(args)
        target = args.resume if isinstance(args.resume, str) else args.out or (f"runs/{args.model}" if args.model else None)
        if target is None:
            raise ConvolabError("--resume needs the run to continue", fix="convolab train --resume runs/cnn")
        writer = tensorboard_writer(args, target) if main_process else None   # rank 0 alone writes the run
        result = resume_run(target, epochs=args.epochs, progress=progress,   # None: the run's own epochs
                            callbacks=[writer] if writer else [],
                            on_train_end=training_pictures() + ([writer.finish_run] if writer else []),
                            distributed_context=context)
    else:
        config = train_config(args)
        suggest_precision(config, quiet=args.quiet or args.recipe is not None)   # a recipe chooses its own
        result = new_run(args.model, config, data_options(args), recipe=args.recipe, epochs=args.epochs,
                         out=args.out, train_limit=args.train_limit, test_limit=args.test_limit, stop_at=args.stop_at,
                         early_stopping=args.early_stopping, overwrite=args.overwrite, progress=progress,
                         show_download=not args.quiet and main_process, on_train_end=training_pictures(),
                         tensorboard=args.tensorboard, distributed_context=context)
    if not main_process:
        return 0
    print(f"test loss {result.evaluation.loss:.4f}  test accuracy {result.evaluation.accuracy:.4f}  "
          f"run: {result.run_dir}" if args.quiet else f"run: {result.run_dir}")
    return 0


# What a resumed run takes from its config.json, never from the command line: the weights must continue as they began.
RESUME_KEEPS = ("recipe", "learning_rate", "batch_size", "optimizer", "validation_split", "seed", "device", "engine",
                "threads", "precision", "train_limit", "test_limit", "stop_at", "early_stopping", "data", "channels",
                "image_size", "test_split", "stream", "overwrite")


def refuse_settings_a_resume_ignores(args: argparse.Namespace) -> None:
    """ConvolabError when `train --resume` is given flags it would ignore (it continues with the run's own settings),
    or a model or --out besides the RUN it names."""
    defaults = vars(build_parser().parse_args(["train"]))
    given = [f"--{name.replace('_', '-')}" for name in RESUME_KEEPS if getattr(args, name, None) != defaults.get(name)]
    if isinstance(args.resume, str):             # --resume RUN: the run is named; a model or --out would be another
        given = (["MODEL"] if args.model else []) + (["--out"] if args.out else []) + given
    if given:
        raise ConvolabError(f"--resume continues a run with the settings its config.json records; "
                            f"{', '.join(given)} would change them",
                            fix="leave them out (--epochs may raise the total), or start a new run with another --out")


def add_run_data_flags(parser: argparse.ArgumentParser) -> None:
    """Data flags for commands that read a run: by default the data the run recorded."""
    add_data_flags(parser, for_run=True)


def add_evaluate_parser(subparsers) -> None:
    from convolab.train import DEVICES

    parser = subparsers.add_parser(
        "evaluate", help="a run's test loss and accuracy, per-class accuracy, confusion matrix, top losses",
        description="Evaluate a trained run on the test set: loss and accuracy, accuracy per class, the confusion "
                    "matrix (counts and row-normalized), the most confused pairs and the top-k losses. A run "
                    "trained with test-time flips (a recipe's; config.json says test_time_flip) is measured as its "
                    "training measured it: each image and its mirror, logits averaged.",
    )
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    add_run_data_flags(parser)
    parser.add_argument("--weights", choices=("final", "best"), default="final",
                        help="final (what training ended with) or best (best.pt) (default final)")
    parser.add_argument("--top", type=arguments.COUNT, default=9, metavar="K", help="top losses to list (default 9)")
    parser.add_argument("--test-limit", type=arguments.COUNT, default=None, metavar="N",
                        help="the first N test images only")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda, then mps, then cpu (default auto)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def run_evaluate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from convolab.evaluate import render_evaluation
    from convolab.experiment import evaluate_run

    reshaped = (args.data is not None or args.channels is not None or args.image_size is not None
                or args.test_split is not None)
    evaluation, dataset, measured = evaluate_run(args.run, data_options(args) if reshaped else None,
                                                 data_dir=args.data_dir, offline=args.offline, weights=args.weights,
                                                 test_limit=args.test_limit, device=args.device,
                                                 top_k_losses=args.top)
    if args.json:
        print(json.dumps(evaluation.to_dict(), indent=2))
    else:
        print(render_evaluation(evaluation, title=f"{Path(args.run)} on {dataset.name} {measured}"))
    return 0


def add_predict_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "predict", help="classify your own images with a trained run: top 3 classes with probabilities",
        description="Classify image files (PNG, JPEG, BMP, GIF, WebP, TIFF, AVIF, PGM/PPM; any size, RGB or gray) with a trained run. Each "
                    "is prepared like the training data: converted to the model's channels, resized with its aspect "
                    "kept and padded, and inverted when its background is light (the lab's data is light on dark).",
    )
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--no-invert", action="store_true", help="never invert (default: invert light backgrounds)")
    parser.add_argument("--top", type=arguments.COUNT, default=3, metavar="K", help="classes to show (default 3)")
    parser.add_argument("--json", action="store_true", help="print JSON")


def run_predict(args: argparse.Namespace) -> int:
    import json

    from convolab.predict import predict_images, render_predictions
    from convolab.runs import load_run

    run = load_run(args.run)
    predictions = predict_images(run.model, args.images, run.input_shape, run.class_names,
                                 invert=False if args.no_invert else "auto", top=args.top)
    if args.json:
        print(json.dumps([prediction.to_dict() for prediction in predictions], indent=2))
    else:
        print(render_predictions(predictions))
    failed = [prediction.path for prediction in predictions if prediction.error is not None]
    if failed:
        print(f"convolab predict: error: {len(failed)} of {len(predictions)} images could not be read: "
              f"{', '.join(failed)}", file=sys.stderr)
        return 2
    return 0


def add_compare_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="train several models (or reuse runs) on the same data and seed; one table",
        description="Train each MODEL on the same data with the same seed (or reuse a RUN directory, or a finished run "
                    "of the same settings under --out), then print one table: parameters, multiply-adds per image, "
                    "seconds per epoch, final training accuracy, best validation accuracy, test accuracy, and epochs "
                    "to the --stop-at target.",
    )
    parser.add_argument("entries", nargs="+", metavar="MODEL|RUN", help="presets, spec files, one-line specs, Keras files (trained on from their weights) or runs")
    add_data_flags(parser)
    add_training_flags(parser)
    parser.add_argument("--out", default="runs/compare", metavar="DIR", help="where new runs go (default runs/compare)")
    parser.add_argument("--stop-at", default=None, metavar="TARGET",
                        help='stop each model at TARGET, e.g. "val_accuracy>=0.9"; the table gives epochs to reach it')
    parser.add_argument("--retrain", action="store_true",
                        help="train again in place of any run already under --out (without it, a matching finished "
                             "run is reused and one trained differently is never replaced)")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")


def run_compare(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from convolab.compare import compare_models, render_comparison
    from convolab.experiment import load_selection

    dataset, selection = load_selection(data_options(args), args.train_limit, args.test_limit, not args.quiet)
    comparison = compare_models(args.entries, dataset, train_config(args), args.out, selection=selection,
                                stop_at=args.stop_at, retrain=args.retrain, progress=progress_for(args),
                                on_train_end=training_pictures())
    if args.json:
        print(json.dumps([dataclasses.asdict(row) for row in comparison.rows], indent=2))
    else:
        print(render_comparison(comparison))
    return 0


def add_lab_parser(subparsers) -> None:
    from convolab.train import DEVICES

    parser = subparsers.add_parser(
        "lab", help="the classic Fashion-MNIST lab: dnn vs cnn, 5 epochs each, side by side",
        description="The convolutions lab in one go: the summaries of dnn and cnn, both trained 5 epochs (Adam 0.001, "
                    "batch 32), then the comparison table. Runs go to runs/lab/dnn and runs/lab/cnn.",
    )
    add_data_flags(parser)
    parser.add_argument("--epochs", type=arguments.COUNT, default=5, help="epochs per model (default 5, the lab's)")
    parser.add_argument("--train-limit", type=arguments.COUNT, default=None, metavar="N",
                        help="train on the first N images only (a quick try)")
    parser.add_argument("--test-limit", type=arguments.COUNT, default=None, metavar="N",
                        help="test on the first N test images only")
    parser.add_argument("--seed", type=arguments.SEED, default=0, help="default 0")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="auto: cuda, then mps, then cpu (default auto)")
    parser.add_argument("--out", default="runs/lab", metavar="DIR", help="where the two runs go (default runs/lab)")
    parser.add_argument("--quiet", action="store_true", help="no progress, only summaries and the table")


def run_lab_command(args: argparse.Namespace) -> int:
    from convolab.lab import run_lab

    run_lab(epochs=args.epochs, out_root=args.out, data_options=data_options(args), train_limit=args.train_limit,
            test_limit=args.test_limit, seed=args.seed, device=args.device, progress=progress_for(args))
    return 0



# --- show, filters, sweep, report ------------------------------------------------------------------------------------

def tensorboard_writer(args: argparse.Namespace, run_dir):
    """The TensorBoard callback for --tensorboard (event files in the run directory), or None."""
    if not getattr(args, "tensorboard", False):
        return None
    from convolab.tensorboard import TensorBoardWriter

    return TensorBoardWriter(run_dir)


def training_pictures() -> list:
    """The hooks train/compare pass to training: curves.png and confusion.png drawn into each finished run. Ctrl-C
    while they are drawn says that the run itself is complete, and which command draws the same pictures."""
    from convolab.plots import write_run_pictures
    from convolab.train import TrainingInterrupted

    def draw(run_dir) -> None:
        try:
            write_run_pictures(run_dir)
            interrupt = LOST_INTERRUPTS.lost()   # one lost in matplotlib's clean-up counts too
            if interrupt is None:
                return
        except KeyboardInterrupt as raised:
            interrupt = raised
        number = stop_signal(interrupt)
        raise TrainingInterrupted(f"{stopped_by(number)} while drawing curves.png and confusion.png; the run in "
                                  f"{run_dir} is complete (checkpoint, history and test metrics saved), only these "
                                  "pictures may be missing",
                                  fix=f"convolab report {run_dir} draws the same curves and confusion matrix",
                                  signal_number=number)

    return [draw]


def add_show_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "show", help="the lab's picture: what each conv/pool layer makes of some test images",
        description="Draw the lab's 'visualize the convolutions and pooling' grid for a trained run: one row per test "
                    "image (its true and predicted class first), one column per Conv2D/pooling layer showing the "
                    "chosen filter's feature map, one colour scale per column. With --all-filters --layer N: every "
                    "filter of layer N for the first image, in pages. Layers are numbered from 0 as in the lab's "
                    "model.layers[N], or named as Keras names them (conv2d_1).",
    )
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("--images", type=arguments.index_list, default=None, metavar="I,J,...",
                        help="test image numbers, at most 32 (default 0,23,28: the lab's three ankle boots, those a "
                             "smaller test set has)")
    parser.add_argument("--filter", type=arguments.FILTER_INDEX, default=1, metavar="F",
                        help="the filter (channel) drawn in every column (default 1, the lab's CONVOLUTION_NUMBER)")
    parser.add_argument("--layers", default=None, metavar="N,M,...",
                        help="the conv/pool layers to draw, by number or name (default: all of them)")
    parser.add_argument("--all-filters", action="store_true", help="every filter of --layer for the first image")
    parser.add_argument("--layer", default=None, metavar="N", help="with --all-filters: the layer, number or name")
    parser.add_argument("--sort", choices=("index", "variance"), default="index",
                        help="with --all-filters: filter order, by number or most varied activation first "
                             "(default index)")
    parser.add_argument("--per-page", type=arguments.COUNT, default=32, metavar="K",
                        help="with --all-filters: filters per picture (default 32)")
    parser.add_argument("--out", default=None, metavar="FILE.png",
                        help="where to write, as its suffix says (.png, .jpg, .svg, .pdf) (default "
                             "RUN/activations.png; with --all-filters RUN/activations-LAYER.png, -p1, -p2, ... when "
                             "paged; beside a Keras file: NAME-activations.png)")


def run_show(args: argparse.Namespace) -> int:
    from convolab.activations import find_layer, lab_images
    from convolab.plots import picture_format, run_activation_grid, save_figure, write_all_filters
    from convolab.runs import load_run

    if args.all_filters and args.layer is None:
        raise ConvolabError("--all-filters needs --layer N: the conv/pool layer whose filters to draw",
                            fix=f"for example: convolab show {args.run} --all-filters --layer 0")
    alone = [flag for flag, given in (("--layer", args.layer is not None), ("--sort", args.sort != "index"),
                                      ("--per-page", args.per_page != 32)) if given]
    if alone and not args.all_filters:           # they shape the --all-filters pictures only: said, never ignored
        raise ConvolabError(f"{', '.join(alone)} {'works' if len(alone) == 1 else 'work'} only with --all-filters "
                            "(the lab's grid takes --layers N,M)",
                            fix=f"add --all-filters, or use --layers for the grid: convolab show {args.run} --layers 0,1")
    if args.out:
        picture_format(args.out)                 # before the run loads: a refusal costs nothing
    run = load_run(args.run)
    images, labels = run.test_data()
    args.images = args.images or lab_images(len(images))
    if args.all_filters:
        layer, image_index = find_layer(run.spec, args.layer), args.images[0]
        paths, count, name = write_all_filters(run, images, labels, layer, image_index, args.sort, args.per_page,
                                               args.out)
        print(f"show: wrote {len(paths)} picture(s) of the {count} filters of layer {layer} ({name}) on test "
              f"image #{image_index}: {', '.join(str(path) for path in paths)}")
        return 0
    layers = None if args.layers is None else [find_layer(run.spec, part) for part in args.layers.split(",")]
    figure = run_activation_grid(run.model, run.spec, images, labels, run.class_names, args.images, args.filter, layers)
    out = save_figure(figure, args.out or run.output_path("activations.png"))
    shown = ", ".join(f"#{index} {run.class_names[int(labels[index])]}" for index in args.images)
    print(f"show: wrote {out} (filter {args.filter}; test images {shown})")
    return 0


def add_filters_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "filters", help="the learned kernels of a run's Conv2D layers, sign shown by a diverging colour map",
        description="Draw the learned kernels (3x3 ones included) of a trained run's Conv2D layers: red weights "
                    "excite, blue ones inhibit, white is zero; one colour scale per layer. Each filter is a strip of "
                    "its kernels for the first --max-inputs input channels.",
    )
    parser.add_argument("run", metavar="RUN", help=RUN_HELP)
    parser.add_argument("--layer", default=None, metavar="N[,M]",
                        help="Conv2D layers by number or name (default: every Conv2D layer)")
    parser.add_argument("--max-inputs", type=arguments.COUNT, default=8, metavar="K",
                        help="input channels shown per filter (default 8)")
    parser.add_argument("--out", default=None, metavar="FILE.png",
                        help="where to write, as its suffix says (.png, .jpg, .svg, .pdf) (default RUN/filters.png; "
                             "beside a Keras file: NAME-filters.png)")


def run_filters(args: argparse.Namespace) -> int:
    from convolab.activations import conv_layer_indices, find_layer, layer_names
    from convolab.plots import picture_format, run_kernels_figure, save_figure
    from convolab.runs import load_run
    from convolab.activations import KERNEL_LAYER_TYPES

    if args.out:
        picture_format(args.out)
    run = load_run(args.run)
    layers = None if args.layer is None else [find_layer(run.spec, part, allowed=KERNEL_LAYER_TYPES)
                                              for part in args.layer.split(",")]
    figure = run_kernels_figure(run.model, run.spec, layers, max_inputs=args.max_inputs)
    out = save_figure(figure, args.out or run.output_path("filters.png"))
    names = layer_names(run.spec)
    print(f"filters: wrote {out} ({', '.join(names[index] for index in layers or conv_layer_indices(run.spec))})")
    return 0


def add_sweep_parser(subparsers) -> None:
    from convolab.sweep import describe_presets

    parser = subparsers.add_parser(
        "sweep", help="the lab's exercises (16/32/64 filters, fewer or more convolutions, dnn) as one experiment",
        description="Train the lab's exercise variants (or --spec MODEL --vary KEY=V1,V2,...) on the same data and "
                    "seed through `convolab compare`, print the table, and draw accuracy per epoch (validation accuracy "
                    "with --validation-split, the same default of none as train and lab) "
                    "(sweep-overlay.png) and test accuracy against seconds (sweep-accuracy-time.png) in --out. "
                    "Finished runs with the same settings are reused.\n\nPresets:\n" + describe_presets(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("presets", nargs="*", metavar="PRESET", help="exercises or groups (default: exercises)")
    parser.add_argument("--spec", default=None, metavar="MODEL", help="your own model, varied by --vary")
    parser.add_argument("--vary", default=None, metavar="KEY=V1,V2",
                        help="with --spec: e.g. filters=16,32,64, kernel_size=3,5, units=64,128, pool_size=2,3, "
                             "rate=0.2,0.5, activation=relu,tanh")
    add_data_flags(parser)
    add_training_flags(parser)
    parser.add_argument("--out", default="runs/sweep", metavar="DIR", help="where the runs go (default runs/sweep)")
    parser.add_argument("--stop-at", default=None, metavar="TARGET",
                        help='the same target for every run, e.g. "val_accuracy>=0.9"')
    parser.add_argument("--retrain", action="store_true",
                        help="train again in place of any run already under --out (without it, a matching finished "
                             "run is reused and one trained differently is never replaced)")
    parser.add_argument("--report", action="store_true", help="also write DIR/report.html comparing the runs")


def run_sweep_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from convolab.compare import render_comparison
    from convolab.experiment import load_selection
    from convolab.report import write_report
    from convolab.sweep import exercise_specs, run_sweep, user_variants

    if (args.spec is None) != (args.vary is None):
        raise ConvolabError("--spec and --vary go together: a model and what to vary in it",
                            fix='for example: convolab sweep --spec cnn --vary filters=16,32,64')
    if args.spec is not None and args.presets:
        raise ConvolabError(f"give either presets ({' '.join(args.presets)}) or --spec/--vary, not both",
                            fix="run two sweeps")
    variants = user_variants(args.spec, args.vary) if args.spec else exercise_specs(args.presets)
    dataset, selection = load_selection(data_options(args), args.train_limit, args.test_limit, not args.quiet)
    result = run_sweep(variants, dataset, train_config(args), args.out, selection=selection, stop_at=args.stop_at,
                       retrain=args.retrain, progress=progress_for(args))
    print(render_comparison(result.comparison))
    print(f"sweep: wrote {result.overlay} and {result.chart}")
    if args.report:
        path = write_report([row.run_dir for row in result.comparison.rows if row.run_dir],
                            Path(args.out) / "report.html")
        print(f"sweep: wrote {path}")
    return 0


def add_report_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="one self-contained HTML file about one or more runs (pictures inside, no network)",
        description="Write one HTML file that needs nothing else: the explained summary, the architecture diagram, "
                    "training curves, test metrics, the confusion matrix, the most confused examples, the activation "
                    "grid and the filters; for several runs, a comparison table and overlays first.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN", help="run directories or Keras model files")
    parser.add_argument("--out", default=None, metavar="FILE.html",
                        help="default RUN/report.html for one run, the runs' common folder/report.html for several; "
                             "a folder (an existing one, or a name ending in /) gets FOLDER/report.html")
    parser.add_argument("--images", type=arguments.index_list, default=[0, 23, 28], metavar="I,J,...",
                        help="test images of the activation grid (default 0,23,28)")
    parser.add_argument("--filter", type=arguments.FILTER_INDEX, default=1, metavar="F",
                        help="the filter of the activation grid (default 1)")


def run_report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from convolab.report import ReportOptions, check_report_name, write_report

    options = ReportOptions(image_indices=tuple(args.images), filter_index=args.filter)
    out = args.out
    if out is not None and (out.endswith(("/", os.sep)) or Path(out).is_dir()):   # a folder: the report goes in it
        out = str(Path(out) / "report.html")
    if out is not None:
        check_report_name(out)                   # before the runs load
    print(f"report: wrote {write_report(args.runs, out, options)}")
    return 0


def add_serve_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="the lab as a live local web page: runs, training, explorer, drawing, evaluation, model",
        description="Serve the lab as a web page on this computer: every run under RUNS_DIR with its curves, a live "
                    "training (started, stopped and resumed from the page), the explorer of feature maps with the "
                    "arithmetic behind every value, drawing or uploading an image, the confusion matrix, the explained "
                    "summary. Prints the URL with its access token, as Jupyter does. Needs the 'serve' extra "
                    "(pip install 'convolab[serve]'). The data flags choose what trainings started from the page use.",
        epilog="example: convolab serve runs/ --open",
    )
    parser.add_argument("runs_dir", nargs="?", default="runs", metavar="RUNS_DIR",
                        help="the folder of runs to show, where trainings from the page are written (default: runs)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this computer only; any other warns)")
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    add_data_flags(parser)


def run_serve(args: argparse.Namespace) -> int:
    from convolab.serve import serve

    if not 0 <= args.port <= 65535:
        raise ConvolabError(f"--port {args.port}; expected 0 to 65535", fix="e.g. --port 8000")
    serve(args.runs_dir, host=args.host, port=args.port, open_browser=args.open, data_options=data_options(args))
    return 0


def add_bench_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="measure this machine in about a minute: the float32 limit and the lab's training step",
        description="Measure this CPU: its float32 matrix-multiply rate (the limit a training step is judged by), the "
                    "lab's CNN training step at batch 32 and 128 as images/s and as a fraction of that limit, the "
                    "bfloat16 step when the CPU has AMX or AVX512-BF16, and Keras's step when TensorFlow is "
                    "installed. Interleaved rounds, medians; one table at the end.",
    )
    parser.add_argument("--seconds", type=arguments.POSITIVE, default=60.0,
                        help="about how long to measure (default 60; a few seconds gives rough figures)")
    parser.add_argument("--no-keras", action="store_true", help="skip Keras even when TensorFlow is installed")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of the table")


def run_bench_command(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from convolab.benchmark import format_table, measurement_count, run_bench

    with Progress(TextColumn("{task.description:<32}"), BarColumn(), MofNCompleteColumn(), transient=True,
                  console=Console(stderr=True), disable=args.json) as bar:
        task = bar.add_task("measuring", total=measurement_count(args.seconds, with_keras=not args.no_keras))
        result = run_bench(args.seconds, with_keras=not args.no_keras,
                           advance=lambda what: bar.update(task, advance=1, description=what))
    print(json.dumps(result.to_dict(), indent=2) if args.json else format_table(result), end="\n" if args.json else "")
    return 0


# --- export ----------------------------------------------------------------------------------------------------------

def add_export_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "export", help="write a run (or a Keras file, or a spec) as a .keras file for Keras 3 or an ONNX file",
        description="Write RUN_OR_MODEL for other tools. keras: a Keras 3 .keras file that keras.models.load_model "
                    "opens (any backend) and that computes the same outputs; it is read back and every weight "
                    "compared. onnx: an ONNX file with a dynamic batch axis (input 'images', N x H x W x C floats in "
                    "[0, 1], Keras's layout; output the class probabilities), run in onnxruntime on up to 256 real "
                    "test images and refused if it differs from PyTorch by more than 1e-4; it opens in Netron. A "
                    "failed export leaves no file. A spec (not a run) exports with fresh weights (seed 0).",
    )
    parser.add_argument("source", metavar="RUN_OR_MODEL",
                        help="a run directory, a Keras model file, or a preset/spec file/one-line spec")
    parser.add_argument("--format", choices=("keras", "onnx"), required=True, help="keras or onnx")
    parser.add_argument("--out", default=None, metavar="FILE",
                        help="where to write (default RUN/model.keras or RUN/model.onnx; beside a Keras file, "
                             "NAME.onnx or NAME-export.keras; for a spec, ./NAME.keras or ./NAME.onnx)")


def run_export(args: argparse.Namespace) -> int:
    from convolab.export import export_model

    print(export_model(args.source, args.format, args.out).describe())
    return 0



# --- entry point -----------------------------------------------------------------------------------------------------

# (name, add_parser, run) for every subcommand, in the order --help lists them.
COMMANDS: list[tuple[str, object, object]] = [
    ("summary", add_summary_parser, run_summary),
    ("data", add_data_parser, run_data),
    ("train", add_train_parser, run_train),
    ("evaluate", add_evaluate_parser, run_evaluate),
    ("predict", add_predict_parser, run_predict),
    ("compare", add_compare_parser, run_compare),
    ("lab", add_lab_parser, run_lab_command),
    ("show", add_show_parser, run_show),
    ("filters", add_filters_parser, run_filters),
    ("sweep", add_sweep_parser, run_sweep_command),
    ("report", add_report_parser, run_report),
    ("serve", add_serve_parser, run_serve),
    ("bench", add_bench_parser, run_bench_command),
    ("export", add_export_parser, run_export),
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


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` is an allocation that failed (CPU or GPU), which a user causes with sizes, not a bug."""
    if isinstance(error, MemoryError) or type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text.lower())


def first_line(error: BaseException) -> str:
    """The allocator's own words, shortened: how much it tried to allocate."""
    text = str(error).strip()
    text = text[text.find("you tried"):] if "you tried" in text else text
    return (text.splitlines()[0] if text else type(error).__name__)[:200]


class LostInterrupts:
    """Ctrl-C is never lost, and SIGTERM ends a command as Ctrl-C does. Python raises KeyboardInterrupt wherever the
    program is, and one raised inside a finalizer (a __del__ or a weakref callback: matplotlib's figure clean-up) is
    printed as "Exception ignored in ..." with a traceback and dropped, so the command would go on and end with 0.
    While installed, such an interrupt is noted quietly (`seen`), and SIGINT notes that it came (`raised`) before
    raising KeyboardInterrupt as Python does; main ends with 130 when either is set.

    SIGTERM (`kill`, `docker stop`) would otherwise end the process at once, silently, with a temporary file left
    where a write was under way: it raises errors.Terminated instead (`terminated`), so the same clean-ups run, and
    main ends with one line and 143. Not in a torchrun rank: its launcher reads a rank that SIGTERM ended as one it
    stopped itself (distributed.root_cause)."""

    def __init__(self):
        self.seen = self.raised = self.terminated = False
        self.previous_hook = None
        self.previous_handlers: dict = {}

    def __enter__(self) -> "LostInterrupts":
        self.seen = self.raised = self.terminated = False
        self.previous_hook, sys.unraisablehook = sys.unraisablehook, self._unraisable
        if threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) is signal.default_int_handler:   # not when Ctrl-C is ignored
                self.previous_handlers[signal.SIGINT] = signal.signal(signal.SIGINT, self._interrupt)
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL and "RANK" not in os.environ:
                self.previous_handlers[signal.SIGTERM] = signal.signal(signal.SIGTERM, self._terminate)
        return self

    def _unraisable(self, unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.seen = True
            self.terminated = self.terminated or isinstance(unraisable.exc_value, Terminated)
        else:
            self.previous_hook(unraisable)

    def _interrupt(self, signum, frame) -> None:
        self.raised = True
        raise KeyboardInterrupt

    def _terminate(self, signum, frame) -> None:
        self.terminated = True
        raise Terminated

    def lost(self) -> KeyboardInterrupt | None:
        """The interrupt a finalizer swallowed or a handler raised (SIGTERM's if it came), or None."""
        if self.terminated:
            return Terminated()
        return KeyboardInterrupt() if self.seen or self.raised else None

    def __exit__(self, *exc) -> None:
        sys.unraisablehook = self.previous_hook
        for number, previous in self.previous_handlers.items():
            signal.signal(number, previous)
        self.previous_handlers = {}


LOST_INTERRUPTS = LostInterrupts()


def main(argv: list[str] | None = None) -> int:
    """The command. Ctrl-C anywhere, from loading PyTorch to the last picture, ends it with one line and status 130;
    SIGTERM with one line and 143."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with LOST_INTERRUPTS:
            status = run_command(argv)
            lost = LOST_INTERRUPTS.lost()
            if status not in (130, 143) and lost is not None:
                raise lost
            return status
    except KeyboardInterrupt as interrupt:
        return stopped(command_name(argv), interrupt)
    except Exception:   # noqa: BLE001 - outside run_command's own handling: the parser's imports (torch, matplotlib)
        lost = LOST_INTERRUPTS.lost()
        if lost is None:
            raise
        return stopped(command_name(argv), lost)   # a library turned the Ctrl-C into its own error (see internal_error)


def command_name(argv: list[str]) -> str:
    """"convolab train" for a line naming the train command, "convolab" when none is named (yet)."""
    named = [word for word in argv if word in {name for name, _add, _run in COMMANDS}]
    return f"convolab{' ' + named[0] if named else ''}"


def stopped(command: str, interrupt: KeyboardInterrupt) -> int:
    """Ctrl-C or SIGTERM that no message of the command's own explained: one line, and 130 or 143."""
    number = stop_signal(interrupt)
    print(f"{command}: {stopped_by(number)}", file=sys.stderr)
    return 128 + number


def run_command(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv   # `train --nproc` starts processes with the same line
    if args.command is None:
        parser.print_help()
        return 2
    run = {name: run for name, _add, run in COMMANDS}[args.command]
    undecodable = [text for text in args.argv if not _is_utf8(text)]
    if undecodable:    # a name the shell passed as raw bytes: titles, reports and config.json could not hold it
        shown = undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        print(f"convolab {args.command}: error: {shown!r} holds bytes that are not UTF-8 text\n"
              "  fix: rename the file or folder with UTF-8 characters (or plain ASCII)", file=sys.stderr)
        return 2
    # A library's warning (a glyph missing from the font, a kernel's note) is one line for the user, not Python's two
    # with a source line from inside a library; the library's own format again once the command is done.
    python_format = warnings.formatwarning
    warnings.formatwarning = lambda message, category, *_rest, **_options: \
        f"convolab {args.command}: warning: {message} ({category.__name__})\n"
    try:
        return run(args)
    except ConvolabError as error:
        kind = "" if error.exit_code >= 128 else "error: "   # an interruption (130, 143) is not an error of the user's
        print(f"convolab {args.command}: {kind}{error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as interrupt:
        return stopped(f"convolab {args.command}", interrupt)
    except BrokenPipeError:
        # `convolab summary cnn | head` closes our stdout early; that is not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as error:
        if error.errno != errno.ENAMETOOLONG:    # any other OSError reaching here is a bug (writers say theirs)
            return internal_error(args, error)
        name = str(error.filename or "")
        shown = name if len(name) <= 80 else f"{name[:60]}...({len(name)} characters)"
        print(f"convolab {args.command}: error: {shown}: the name is too long for the file system\n"
              "  fix: choose a shorter name (most file systems allow 255 bytes per name)", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - the last line of defence against a bare traceback
        if is_out_of_memory(error):
            print(f"convolab {args.command}: error: out of memory: {first_line(error)}\n"
                  "  fix: use a smaller --batch-size, --image-size or model, or --train-limit/--test-limit; "
                  "`convolab summary MODEL` shows each layer's memory per image", file=sys.stderr)
            return 2
        return internal_error(args, error)
    finally:
        warnings.formatwarning = python_format


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:                   # Python keeps undecodable bytes as lone surrogates (PEP 383)
        return False
    return True


def internal_error(args: argparse.Namespace, error: BaseException) -> int:
    """What a bug looks like to the user: one line, and how to get the traceback for the report.

    Unless a Ctrl-C or SIGTERM came first: a library that catches every exception can turn the interrupt into an error
    of its own (matplotlib's import, interrupted inside NumPy, raised a ValueError), which is then no bug of anyone's."""
    lost = LOST_INTERRUPTS.lost()
    if lost is not None:
        return stopped(f"convolab {args.command}", lost)
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
