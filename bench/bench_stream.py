"""Streaming image folders (issue 15): decode, cached and training rates, the data wait, and peak memory for two sizes.

usage: .venv/bin/python bench/bench_stream.py [--count 20000] [--small-count 5000] [--size 128] [--steps 20]
                                              [--batch 128] [--root /tmp/convolab-bench-stream] [--json out.json]

Generates --count JPEGs of --size x --size (10 classes of coloured shapes on noise) under --root once, and a second
folder of the first --small-count of them (hard links). Each folder is then measured in a fresh process with an empty
cache, so peak memory is that folder's alone:
  decode    images/s building the cache: DataLoader worker processes decode, resize and convert every file once
  cached    images/s reading shuffled batches of --batch from the cache (pread, scaled to float), one epoch, next to
            the same batching from a tensor in memory
  training  images/s over --steps training steps (forward, backward, Adam) of a small CNN at the full --size, with
            batches read from the cache, side by side with the same steps on the same images held in memory;
            "data wait" is the share of the cached run's time spent getting batches
  peak RSS  the process's peak resident memory (ru_maxrss), and the decode workers' peak, against the folder's
            decoded size (what loading it into memory would hold)
Nothing here is a pass/fail test: the figures go to BENCHMARKS.md with the load average printed below them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np

MODEL = "conv16x3-relu,maxpool4,conv32x3-relu,maxpool4,flatten,dense64-relu,dense"
CLASSES = 10


def _write_image(job: tuple[Path, int, int]) -> None:
    from PIL import Image, ImageDraw

    path, index, size = job
    generator = np.random.default_rng(index)
    label = index % CLASSES
    pixels = generator.normal(90, 35, (size, size, 3)).clip(0, 255).astype(np.uint8)   # noise: realistic JPEG sizes
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    colour = tuple(int(value) for value in (np.array([label * 25, 255 - label * 20, (label * 70) % 256])))
    left, top = generator.integers(0, size // 2, 2)
    extent = int(size // 4 + label * size // 40)
    (draw.ellipse if label % 2 else draw.rectangle)([left, top, left + extent, top + extent], fill=colour)
    image.save(path, quality=90)


def generate(folder: Path, count: int, size: int) -> None:
    """count JPEGs in folder/class-K/, written by one process per core; skipped when the folder is already complete."""
    if len(list(folder.glob("class-*/*.jpg"))) == count:
        return
    for label in range(CLASSES):
        (folder / f"class-{label}").mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"class-{index % CLASSES}" / f"{index:06d}.jpg", index, size) for index in range(count)]
    started = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(_write_image, jobs, chunksize=256)
    print(f"generated {count:,} JPEGs of {size}x{size} in {folder} in {time.perf_counter() - started:.0f}s",
          flush=True)


def linked_subset(source: Path, folder: Path, count: int) -> None:
    """The first `count` files of `source` (by index) as hard links in `folder`: a smaller folder, nothing re-encoded."""
    if len(list(folder.glob("class-*/*.jpg"))) == count:
        return
    for label in range(CLASSES):
        (folder / f"class-{label}").mkdir(parents=True, exist_ok=True)
    for index in range(count):
        name = f"class-{index % CLASSES}/{index:06d}.jpg"
        if not (folder / name).exists():
            os.link(source / name, folder / name)


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024   # Linux reports KiB


def measure(folder: Path, size: int, steps: int, batch: int) -> dict:
    """One folder in this (fresh) process: decode, cached read, training from cache and from memory, peak RSS."""
    import torch

    from convolab.data import iterate_batches, load_dataset
    from convolab.engine import TrainStep, prepare_for_training
    from convolab.model import build_model
    from convolab.spec import load_spec, resolve_spec
    from convolab.data.streaming import default_workers
    from convolab.train import make_optimizer

    torch.manual_seed(0)
    started = time.perf_counter()
    dataset = load_dataset(str(folder), image_size=(size, size), channels=3, stream=True, progress=False)
    decode_seconds = time.perf_counter() - started
    count = len(dataset.train_labels) + len(dataset.test_labels)
    rss_after_decode = peak_rss_mib()

    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for images, _ in iterate_batches(dataset.train_images, dataset.train_labels, batch, shuffle=True,
                                     generator=generator):
        pass
    cached_seconds = time.perf_counter() - started

    spec = resolve_spec(load_spec(MODEL), dataset.input_shape, dataset.num_classes)
    device = torch.device("cpu")

    def train(batches) -> tuple[float, float, int]:
        """(total seconds, seconds getting batches, images) for `steps` steps of a freshly built model."""
        torch.manual_seed(0)
        model = prepare_for_training(build_model(spec, dataset.input_shape, dataset.num_classes), device)
        step = TrainStep(model, make_optimizer("adam", model.parameters(), 0.001, device), device)
        waited, seen = 0.0, 0
        iterator = iter(batches)
        images, labels = next(iterator)
        step(images, labels)                    # one warm-up step, not timed
        started = time.perf_counter()
        for _ in range(steps):
            fetched = time.perf_counter()
            images, labels = next(iterator)
            waited += time.perf_counter() - fetched
            step(images, labels)
            seen += len(labels)
        step.read()
        return time.perf_counter() - started, waited, seen

    def epochs(images, labels):
        """Shuffled batches, epoch after epoch, for as many steps as asked."""
        generator = torch.Generator().manual_seed(1)
        while True:
            yield from iterate_batches(images, labels, batch, shuffle=True, generator=generator)

    from_cache = train(epochs(dataset.train_images, dataset.train_labels))
    rss_streamed = peak_rss_mib()   # before the baseline below holds its batches in memory
    in_memory_rows = torch.randperm(len(dataset.train_labels), generator=torch.Generator().manual_seed(1))
    in_memory_rows = in_memory_rows[: (steps + 1) * batch]
    held = (dataset.train_images[in_memory_rows], dataset.train_labels[in_memory_rows])   # (steps+1) batches in RAM
    started = time.perf_counter()
    for images, _ in iterate_batches(*held, batch, shuffle=True, generator=torch.Generator().manual_seed(0)):
        pass
    memory_read_seconds = time.perf_counter() - started
    from_memory = train(epochs(*held))
    return {
        "folder": str(folder), "images": count, "size": size, "workers": default_workers(count),
        "decoded_mib": count * 3 * size * size / 2**20,
        "decode_images_per_s": count / decode_seconds, "decode_seconds": decode_seconds,
        "cached_images_per_s": len(dataset.train_labels) / cached_seconds,
        "memory_read_images_per_s": len(held[1]) / memory_read_seconds,
        "train_cached_images_per_s": from_cache[2] / from_cache[0], "train_cached_data_wait": from_cache[1] / from_cache[0],
        "train_memory_images_per_s": from_memory[2] / from_memory[0],
        "train_memory_data_wait": from_memory[1] / from_memory[0],
        "peak_rss_after_decode_mib": rss_after_decode, "peak_rss_mib": rss_streamed,
        "workers_peak_rss_mib": peak_rss_mib(resource.RUSAGE_CHILDREN),
    }


def report(results: list[dict], arguments: argparse.Namespace) -> str:
    rows = [("images in folder", "{images:,}"), ("decoded size (MiB, what in-memory loading holds)", "{decoded_mib:,.0f}"),
            ("decode workers", "{workers}"),
            ("decode (build cache), images/s", "{decode_images_per_s:,.0f}"),
            ("cached read, shuffled batches, images/s", "{cached_images_per_s:,.0f}"),
            ("in-memory read, same batching (baseline), images/s", "{memory_read_images_per_s:,.0f}"),
            ("training from the cache, images/s", "{train_cached_images_per_s:,.0f}"),
            ("training from memory (baseline), images/s", "{train_memory_images_per_s:,.0f}"),
            ("data wait, training from the cache", "{train_cached_data_wait:.1%}"),
            ("data wait, training from memory", "{train_memory_data_wait:.1%}"),
            ("peak RSS after the decode (MiB)", "{peak_rss_after_decode_mib:,.0f}"),
            ("peak RSS, decode + cached epoch + training (MiB)", "{peak_rss_mib:,.0f}"),
            ("decode workers' peak RSS (MiB, largest one)", "{workers_peak_rss_mib:,.0f}")]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':<{width}}  " + "  ".join(f"{Path(result['folder']).name:>14}" for result in results)]
    for label, template in rows:
        lines.append(f"{label:<{width}}  " + "  ".join(f"{template.format(**result):>14}" for result in results))
    load = os.getloadavg()
    lines.append(f"model {MODEL} at {arguments.size}x{arguments.size}x3, batch {arguments.batch}, {arguments.steps} "
                 f"timed steps; {os.cpu_count()} cores; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
                 f"at the end; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    lines.append("command: " + " ".join([Path(sys.executable).name, *sys.argv]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=20000, help="images in the large folder (default 20000)")
    parser.add_argument("--small-count", type=int, default=5000, help="images in the small folder (default 5000)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default 128)")
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per side (default 20)")
    parser.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    parser.add_argument("--root", default="/tmp/convolab-bench-stream", help="where the folders are generated")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)   # internal: one folder, in a child
    arguments = parser.parse_args()
    if arguments.measure:
        print(json.dumps(measure(Path(arguments.measure), arguments.size, arguments.steps, arguments.batch)))
        return
    root = Path(arguments.root)
    large = root / f"jpeg-{arguments.count}"
    small = root / f"jpeg-{arguments.small_count}"
    generate(large, arguments.count, arguments.size)
    linked_subset(large, small, arguments.small_count)
    results = []
    for folder in (small, large):
        with tempfile.TemporaryDirectory(prefix="convolab-bench-cache-") as cache:
            child = subprocess.run([sys.executable, __file__, "--measure", str(folder), "--size", str(arguments.size),
                                    "--steps", str(arguments.steps), "--batch", str(arguments.batch)],
                                   env={**os.environ, "XDG_CACHE_HOME": cache}, capture_output=True, text=True)
        if child.returncode != 0:
            sys.exit(f"measuring {folder} failed:\n{child.stderr[-3000:]}")
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(f"measured {folder}", flush=True)
    text = report(results, arguments)
    print(text)
    if arguments.json:
        Path(arguments.json).write_text(json.dumps({"results": results, "report": text}, indent=2))


if __name__ == "__main__":
    main()
