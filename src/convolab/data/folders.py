"""Image folders as datasets: one subfolder of images per class, or train/ and test/ folders of those.

Every readable image is fitted into one size (aspect kept, padded) and one channel count; files that cannot be read, or
whose suffix is not an image type, are left out and listed with the reason, never fatal on their own. Hidden files and
folders (.DS_Store, .thumbnails/, a Mac's ._NAME.png) and the __MACOSX folder a Mac's zip adds are not data: skipped
without a word. Half a train/test layout (train/ beside val/) is refused rather than read as classes named so.
"""
from __future__ import annotations

import unicodedata
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from convolab.data.dataset import Dataset
from convolab.data.fingerprint import folder_record
from convolab.errors import DataError
from convolab.images import IMAGE_FORMATS, IMAGE_SUFFIXES, load_image

DEFAULT_FOLDER_IMAGE_SIZE = (28, 28)   # the lab's input size, so the lab's models apply as they are
CHANNELS_FIX = "use channels=1 (gray) or channels=3 (RGB) (--channels 1 or 3 on the command line)"


def is_number(value) -> bool:
    """An int or float argument, not a bool (True is 1 to Python) nor text that reads as one."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def class_name_text(folder_name: str) -> str:
    """A folder name as printable text on one line: bytes that are not UTF-8 (which Python keeps as lone surrogates,
    and no font, terminal or HTML page can show) become \\xNN escapes: b"caf\\xe9" -> "caf\\\\xe9"; control characters
    and line breaks (a folder "a\\nb" split every table row it was in) become their escapes: "a\\\\nb". Other UTF-8
    names are unchanged."""
    text = folder_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(character.encode("unicode_escape").decode("ascii")
                   if unicodedata.category(character) in ("Cc", "Zl", "Zp") else character for character in text)


# A folder a Mac's zip adds beside what was zipped: its "._NAME.png" files are Finder metadata, not images.
MAC_METADATA = "__MACOSX"


def _hidden(name: str) -> bool:
    """A name no one means as data: hidden (.DS_Store, .thumbnails/, a Mac's ._NAME.png metadata) or __MACOSX."""
    return name.startswith(".") or name == MAC_METADATA


def _class_folders(directory: Path) -> list[Path]:
    return sorted((child for child in directory.iterdir() if child.is_dir() and not _hidden(child.name)),
                  key=lambda child: child.name)


def _visible_files(folder: Path) -> list[Path]:
    """Files under `folder`, subfolders included, none inside a hidden folder nor hidden itself."""
    return sorted(path for path in folder.rglob("*")
                  if path.is_file() and not any(_hidden(part) for part in path.relative_to(folder).parts))


def _image_files(folder: Path) -> list[Path]:
    return [path for path in _visible_files(folder) if path.suffix.lower() in IMAGE_SUFFIXES]


def _other_files(folder: Path) -> list[Path]:
    """Files under `folder` without an image suffix (hidden ones aside): reported, never read."""
    return [path for path in _visible_files(folder) if path.suffix.lower() not in IMAGE_SUFFIXES]


def _list_folder_split(root: Path, class_folders: tuple[str, ...], skipped: list[str]) -> list[tuple[Path, int]]:
    """Every image file under root/<class folder>/ with its label; files whose suffix is not an image type go to
    `skipped`."""
    files: list[tuple[Path, int]] = []
    for label, folder_name in enumerate(class_folders):
        folder = root / folder_name
        if not folder.is_dir():
            continue
        skipped.extend(f"{path}: not an image type (expected {', '.join(IMAGE_SUFFIXES)})"
                       for path in _other_files(folder))
        files += [(path, label) for path in _image_files(folder)]
    return files


def _read_folder_split(files: list[tuple[Path, int]], input_shape: tuple[int, int, int],
                       skipped: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every readable image of `files` (path, label) as (N, C, H, W) uint8 and (N,) labels; the unreadable ones, with
    the reason, go to `skipped`."""
    height, width, channels = input_shape
    tensors: list[torch.Tensor] = []
    labels: list[int] = []
    for path, label in files:
        try:
            tensors.append(load_image(path, input_shape, invert=False))
        except DataError as error:
            skipped.append(error.message)
            continue
        labels.append(label)
    images = torch.stack(tensors) if tensors else torch.zeros((0, channels, height, width), dtype=torch.uint8)
    return images, torch.tensor(labels, dtype=torch.int64)


def _folder_classes(root: Path, split_roots: list[Path]) -> tuple[str, ...]:
    """Class names (subfolder names) under `split_roots`, each required to hold at least one image file; two at least."""
    names = sorted({child.name for split_root in split_roots for child in _class_folders(split_root)})
    if len(names) < 2:
        found = f"one class ({names[0]!r})" if names else "no class subfolders"
        raise DataError(
            f"{root}: {found}; a classifier needs at least two classes, one subfolder of images each",
            fix=f"arrange the images as {root}/<class name>/<image files>, with two or more class folders",
        )
    train_root = split_roots[0]
    empty = [name for name in names if not (train_root / name).is_dir() or not _image_files(train_root / name)]
    if empty:
        raise DataError(
            f"{train_root}: class folder(s) with no image files: {', '.join(map(class_name_text, empty))}"
            f"{_other_types_held(train_root, empty)}",
            fix=f"put {IMAGE_FORMATS} images in every class folder (convert other formats first), or remove the "
                "empty ones",
        )
    return tuple(names)


def _other_types_held(root: Path, folder_names: list[str]) -> str:
    """' (they hold 12 files of other types: .heic, .txt)' for class folders whose files convolab does not read (an
    iPhone's HEIC photos, say), so that "no image files" is not taken for an empty folder; '' when they hold none."""
    others = [path for name in folder_names if (root / name).is_dir() for path in _other_files(root / name)]
    if not others:
        return ""
    suffixes = sorted({path.suffix.lower() or "(no suffix)" for path in others})
    return f" (they hold {len(others)} file(s) of other types: {', '.join(suffixes[:8])}; expected {IMAGE_FORMATS})"


# The folder names of a split layout: root/train/<class>/... and root/test/<class>/... (load_image_folder).
SPLIT_FOLDERS = ("train", "test")


def _holds_class_folders(folder: Path) -> bool:
    """Whether `folder` looks like a split (subfolders, no image files of its own) rather than one class of images."""
    children = [child for child in folder.iterdir() if not _hidden(child.name)]
    return (any(child.is_dir() for child in children)
            and not any(child.is_file() and child.suffix.lower() in IMAGE_SUFFIXES for child in children))


def check_split_layout(root: Path) -> None:
    """DataError for half a train/test layout: a train/ (or test/) of class folders without the other beside it.

    Without this check root/train/ and a root/val/ (Keras's and Kaggle's usual third name) would be read as two classes
    named "train" and "val", every image found in their subfolders, and trained without a word. A class truly named
    train (vehicles: train, car, bus) holds its images itself, and passes."""
    halves = [name for name in SPLIT_FOLDERS if (root / name).is_dir() and _holds_class_folders(root / name)]
    if len(halves) != 1:
        return
    found = halves[0]
    missing = SPLIT_FOLDERS[1 - SPLIT_FOLDERS.index(found)]
    classes = [class_name_text(child.name) for child in _class_folders(root / found)]
    others = [class_name_text(child.name) for child in _class_folders(root) if child.name != found]
    beside = f" (beside it: {', '.join(name + '/' for name in others)})" if others else ""
    rename = f"rename {others[0]}/ to {missing}/ if it holds the held-out images; otherwise " if len(others) == 1 else ""
    raise DataError(
        f"{root}: {found}/ holds class folders ({', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}) but "
        f"there is no {missing}/ folder{beside}; expected train/ and test/ folders with one subfolder per class each, "
        f"or the class folders directly in {root}",
        fix=f"{rename}add {root / missing}/ with the same class folders, or move the class folders up into {root} "
            "(--test-split then holds a part of each class out for testing)",
    )


class UnreadFolderWarning(UserWarning):
    """Folders beside train/ and test/, which convolab does not read (val/, say)."""


def warn_of_unread_folders(root: Path) -> None:
    """An UnreadFolderWarning naming the folders beside train/ and test/: a val/ there (Keras's and Kaggle's third
    split) was left out without a word."""
    others = [class_name_text(child.name) + "/" for child in _class_folders(root) if child.name not in SPLIT_FOLDERS]
    if others:
        warnings.warn(f"{root}: {', '.join(others)} beside train/ and test/ {'is' if len(others) == 1 else 'are'} not "
                      f"read: convolab trains on train/ and tests on test/ (to validate during training, "
                      f"--validation-split holds out the end of train/; to test on {others[0]}, name it test/)",
                      UnreadFolderWarning, stacklevel=3)


def _all_gray(images: torch.Tensor) -> bool:
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


def _stratified_split(labels: torch.Tensor, test_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): per class, a seeded shuffle and round(n * test_split) of its images held out for test."""
    generator = torch.Generator().manual_seed(seed)
    train_parts, test_parts = [], []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = round(len(members) * test_split)
        test_parts.append(members[:held_out])
        train_parts.append(members[held_out:])
    if not train_parts:                          # no readable image at all: check_every_class_readable says which
        nothing = torch.empty(0, dtype=torch.int64)
        return nothing, nothing
    return torch.cat(train_parts).sort().values, torch.cat(test_parts).sort().values


def check_every_class_readable(root: Path, class_names: tuple[str, ...], train_labels: torch.Tensor,
                               skipped: list[str]) -> list[int]:
    """Training images per class; DataError naming the classes left with none (all their files unreadable)."""
    counts = torch.bincount(train_labels, minlength=len(class_names)).tolist()
    unreadable_classes = [name for name, count in zip(class_names, counts) if count == 0]
    if unreadable_classes and not skipped:       # every file read; the test split took them all
        raise DataError(f"{root}: no training images left for class(es) {', '.join(unreadable_classes)}: the test "
                        "split held every one of their images out",
                        fix="lower --test-split (e.g. 0.2), or add images to those classes")
    if unreadable_classes:
        raise DataError(
            f"{root}: no readable training images for class(es) {', '.join(unreadable_classes)} "
            f"({len(skipped)} file(s) left out: {'; '.join(skipped[:5])})",
            fix="replace the unreadable files, or add readable images to those classes",
        )
    return counts


def load_image_folder(root: str | Path, channels: int | None = None, image_size: tuple[int, int] | None = None,
                      test_split: float = 0.2, seed: int = 0, stream: bool | None = None,
                      memory_budget: str | int | None = None, report: Callable[[str], None] | None = None) -> Dataset:
    """A folder with one subfolder of images per class (or train/ and test/ folders of those) as a Dataset.

    channels: 1 (gray) or 3 (RGB); None picks 1 when every image is gray (R = G = B everywhere, whatever the file's
    mode: WebP, say, stores gray as RGB), else 3.
    image_size: (height, width) every image is fitted into, aspect kept and padded; default 28x28 as the lab.
    test_split: the fraction of each class held out for test when there are no train/ and test/ folders; the
    choice is a seeded shuffle, so the same folder and seed always give the same split.
    stream: True keeps the images on disk (streaming.py: decoded once into a cache, read batch by batch); None does
    so when the decoded folder would exceed `memory_budget` (default $CONVOLAB_MEMORY_BUDGET, else a quarter of RAM).
    report: called with lines about the cache (building, reusing, class balance) when streaming.
    """
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataError(f"{root}: a file, not a folder of images (one subfolder of images per class)",
                        fix=f"give the folder that holds the class folders; to classify this one image: "
                            f"convolab predict RUN {root}")
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", fix="give a dataset name (fashion-mnist, mnist) or a folder of images")
    if not is_number(test_split) or not 0.0 <= test_split < 1.0:   # a text "0.2" was a TypeError from `<=`
        raise DataError(f"test_split={test_split!r}; expected a fraction in [0, 1)", fix="use test_split=0.2, say (--test-split 0.2 on the command line)")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= 2**64 - 1:   # as --seed takes
        raise DataError(f"seed={seed!r}; expected a whole number from 0 to {2**64 - 1}",
                        fix="use seed=0, say (--seed 0 on the command line)")
    presplit = (root / "train").is_dir() and (root / "test").is_dir()
    if not presplit:
        check_split_layout(root)
    else:
        warn_of_unread_folders(root)
    split_roots = [root / "train", root / "test"] if presplit else [root]
    class_folders = _folder_classes(root, split_roots)
    class_names = tuple(class_name_text(name) for name in class_folders)
    if len(set(class_names)) < len(class_names):
        raise DataError(f"{root}: two class folders have the same name once shown as text: "
                        f"{', '.join(sorted(name for name in class_names if class_names.count(name) > 1))}",
                        fix="rename one of them (UTF-8 names are shown as they are)")
    if channels not in (None, 1, 3) or isinstance(channels, bool):   # True == 1 for `in`
        raise DataError(f"channels={channels!r}; expected 1 (gray) or 3 (RGB)", fix=CHANNELS_FIX)
    height, width = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    # Undecided channels: read as RGB, and keep one channel if all three are equal everywhere (exactly what reading as
    # gray gives, since Pillow's luma of R = G = B is that value).
    input_shape = (height, width, channels or 3)
    skipped: list[str] = []
    from convolab.data.streaming import FolderFile, load_streamed_folder, needs_streaming

    listed = {split_root: _list_folder_split(split_root, class_folders, skipped) for split_root in split_roots}
    how = ("train/ and test/ folders" if presplit
           else f"split {1 - test_split:.0%}/{test_split:.0%} per class with seed {seed}")
    if needs_streaming(sum(map(len, listed.values())), input_shape, stream, memory_budget):
        files = [FolderFile(path, label, split_root.name if presplit else "all")
                 for split_root, entries in listed.items() for path, label in entries]
        dataset = load_streamed_folder(root, class_names, files, skipped, (height, width), channels, how, test_split,
                                       seed, report=report)
        dataset.files = folder_record(root, [file.path for file in files])
        return dataset
    if presplit:
        train_images, train_labels = _read_folder_split(listed[root / "train"], input_shape, skipped)
        test_images, test_labels = _read_folder_split(listed[root / "test"], input_shape, skipped)
    else:
        images, labels = _read_folder_split(listed[root], input_shape, skipped)
        train_index, test_index = _stratified_split(labels, test_split, seed)
        train_images, train_labels = images[train_index], labels[train_index]
        test_images, test_labels = images[test_index], labels[test_index]
    if channels is None and _all_gray(train_images) and _all_gray(test_images):
        train_images, test_images = train_images[:, :1].clone(), test_images[:, :1].clone()
    check_every_class_readable(root, class_names, train_labels, skipped)
    return Dataset(
        name=root.name, class_names=class_names,
        train_images=train_images, train_labels=train_labels, test_images=test_images, test_labels=test_labels,
        source=f"image folder {root} ({how})", skipped_files=tuple(skipped),
        files=folder_record(root, [path for entries in listed.values() for path, _label in entries]),
    )
