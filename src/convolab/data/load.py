"""The one entry point: a dataset by registry name or an image folder by path, in the channels and size asked for."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from convolab.data.dataset import Dataset
from convolab.data.folders import CHANNELS_FIX, is_number, load_image_folder
from convolab.data.registry import DATASETS, DEFAULT_DATASET, dataset_info
from convolab.data.sources import load_registry_dataset
from convolab.errors import DataError

IMAGE_SIZE_FIX = "use image_size=(28, 28), say (--image-size 28,28 on the command line)"


def _looks_like_path(source: str | Path) -> bool:
    text = str(source)
    return isinstance(source, Path) or os.sep in text or text.startswith((".", "~")) or Path(text).is_dir()


def source_to_record(source: str | Path) -> str:
    """How a run records where its data is: a dataset's name as it is, a folder of images by its absolute path, so
    that evaluate, show and --resume find it again from any working directory."""
    if (isinstance(source, str) and (source in DATASETS or not source.strip())) or not Path(source).expanduser().is_dir():
        return str(source)
    return str(Path(source).expanduser().resolve())


def _reshape_images(images: torch.Tensor, channels: int | None, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Whole-tensor conversion of (N, C, H, W) uint8 images to `channels` and to fit `image_size`, aspect kept."""
    if channels is not None and channels != images.shape[1]:
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and images.shape[1] == 3:
            # ITU-R 601 luma, the weights Pillow's convert("L") uses.
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"channels={channels}; expected 1 (gray) or 3 (RGB)", fix=CHANNELS_FIX)
    if image_size is not None and tuple(image_size) != tuple(images.shape[2:]):
        height, width = image_size
        scale = min(height / images.shape[2], width / images.shape[3])
        new_height, new_width = max(1, round(images.shape[2] * scale)), max(1, round(images.shape[3] * scale))
        resized = torch.nn.functional.interpolate(images.float(), size=(new_height, new_width), mode="bilinear",
                                                  antialias=True, align_corners=False)
        resized = resized.round().clamp(0, 255).to(torch.uint8)
        top, left = (height - new_height) // 2, (width - new_width) // 2
        # Zero padding: the registry datasets' background is black.
        images = torch.nn.functional.pad(resized, (left, width - new_width - left, top, height - new_height - top))
    return images


def _parse_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if is_number(image_size):
        image_size = (image_size, image_size)
    # Whole numbers only: int() made True a 1x1 image and 28.5 a 28.
    try:
        height, width = image_size
    except (TypeError, ValueError):
        raise DataError(f"image_size={image_size!r}; expected (height, width)", fix=IMAGE_SIZE_FIX) from None
    if not all(is_number(side) and float(side).is_integer() for side in (height, width)):
        raise DataError(f"image_size={image_size!r}; expected (height, width) in whole pixels", fix=IMAGE_SIZE_FIX)
    height, width = int(height), int(width)
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        raise DataError(f"image_size=({height}, {width}); expected sides from 1 to 4096", fix=IMAGE_SIZE_FIX)
    return (height, width)


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def load_dataset(source: str | Path = DEFAULT_DATASET, data_dir: str | Path | None = None, offline: bool = False,
                 channels: int | None = None, image_size: tuple[int, int] | None = None, test_split: float = 0.2,
                 seed: int = 0, progress: bool = True, stream: bool | None = None) -> Dataset:
    """A dataset by name (fashion-mnist, mnist) or a path to an image folder, as verified uint8 tensors.

    data_dir: a folder holding the four IDX files (gzipped or raw); default CONVOLAB_DATA_DIR, then the usual places.
    offline: never touch the network.  channels: 1 or 3 (default: the data's own).  image_size: (height, width) to fit,
    aspect kept and padded (default: the data's own; 28x28 for image folders).  test_split, seed: image folders only,
    when they have no train/ and test/ subfolders.  progress: show a progress bar while downloading, and what the
    image cache does.  stream: image folders only; True keeps the images on disk, None when larger than the budget.
    """
    if not str(source).strip():   # Path("") is the current folder: an unset variable would train on whatever is here
        raise DataError(f"dataset {str(source)!r}: empty; expected a dataset name or a folder of images",
                        fix="give a dataset name (fashion-mnist, mnist) or a folder's path (--data photos/)")
    size = _parse_image_size(image_size)
    if channels is not None and (channels not in (1, 3) or isinstance(channels, bool)):
        raise DataError(f"channels={channels!r}; expected 1 (gray) or 3 (RGB)", fix=CHANNELS_FIX)
    options = {"source": source_to_record(source), "data_dir": None if data_dir is None else str(data_dir), "offline": offline,
               "channels": channels, "image_size": list(size) if size else None, "test_split": test_split, "seed": seed,
               **({"stream": True} if stream else {})}
    if isinstance(source, str) and source in DATASETS:
        dataset = load_registry_dataset(DATASETS[source], data_dir=data_dir, offline=offline, progress=progress)
    elif _looks_like_path(source):
        dataset = load_image_folder(source, channels=channels, image_size=size, test_split=test_split, seed=seed,
                                    stream=stream, report=_print_to_stderr if progress else None)
        dataset.options = options
        return dataset
    else:
        dataset_info(str(source))   # raises the "unknown dataset" error
        raise AssertionError("unreachable")
    dataset.train_images = _reshape_images(dataset.train_images, channels, size)
    dataset.test_images = _reshape_images(dataset.test_images, channels, size)
    dataset.options = options
    return dataset
