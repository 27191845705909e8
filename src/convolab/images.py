"""One image file to a model-ready uint8 tensor (C, H, W): any common format, gray or RGB, aspect kept, optionally inverted.

Fashion-MNIST and MNIST are light objects on a dark (zero) background. A photo of a shirt on a white table is the opposite,
and a model trained on the lab's data sees it as a negative. So `invert="auto"` inverts an image whose background is
light, judging the background by the median of the pixels on its one-pixel border (the object is usually in the middle;
the median ignores the few border pixels it touches). Light means a median above 127 on the 0..255 gray scale.
"""
from __future__ import annotations

import io
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from convolab.errors import DataError

# The suffixes an image folder's files are read by. Beyond the usual ones: JPEG as a browser saves it (.jfif, .jpe),
# AVIF (a phone's), and Netpbm (.pgm, .ppm: the format of classic face and digit datasets).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jfif", ".jpe", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".avif",
                  ".pgm", ".ppm", ".pnm", ".pbm")
IMAGE_FORMATS = "PNG, JPEG, BMP, GIF, WebP, TIFF, AVIF or PGM/PPM"   # the formats those suffixes name, for messages
LIGHT_BACKGROUND = 127   # border median above this (0..255) counts as a light background
# The largest image decoded: 64 megapixels (an 8000x8000 photo; 256 MB as RGBA). A 20000x20000 PNG of zeros is a
# few hundred kilobytes on disk and 1.6 GB decoded: a decompression bomb. Its size is read from the header first; a
# JPEG over it (a 108-megapixel phone photo) is decoded at a half, quarter or eighth of its size instead (_decode_smaller).
MAX_IMAGE_PIXELS = 64_000_000


def open_image(path: str | Path | bytes, max_pixels: int | None = None):
    """Open and decode an image with Pillow, upright per its EXIF orientation; DataError naming the file otherwise.

    path: a file, or the bytes of one (an upload; named "the upload" in messages). max_pixels: a lower limit than
    MAX_IMAGE_PIXELS (a server's), checked from the header before decoding like it.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    source = io.BytesIO(path) if isinstance(path, bytes) else Path(path)
    path = "the upload" if isinstance(path, bytes) else source
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    if isinstance(source, Path) and source.exists() and not source.is_file():   # a pipe would block the read forever
        kind = "a folder" if source.is_dir() else "not a regular file (a pipe or a device)"
        raise DataError(f"{path}: {kind}, not an image file", fix="give the image files themselves")
    empty = (source.getbuffer().nbytes == 0 if isinstance(source, io.BytesIO)
             else source.is_file() and source.stat().st_size == 0)
    if empty:                                            # Pillow would say only "cannot identify image file"
        raise DataError(f"{path}: an empty file (0 bytes), not an image",
                        fix="copy or save the image again: this copy was never written (an interrupted download?)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)   # checked below, with a clearer message
            image = Image.open(source)
        with image:
            width, height = image.size
            if width * height > limit and not _decode_smaller(image, limit):
                raise too_large(path, f"{width}x{height} pixels", limit)
            image.seek(0)            # the first frame of an animated GIF or WebP
            image.load()
            upright = ImageOps.exif_transpose(image)
            return upright if upright is not None else image.copy()
    except FileNotFoundError:
        raise DataError(f"{path}: no such image file", fix="check the path") from None
    except Image.DecompressionBombError as error:   # Pillow's own guard, raised by Image.open for the largest
        pixels = re.search(r"\((\d+) pixels\)", str(error))
        raise too_large(path, f"{int(pixels.group(1)):,} pixels" if pixels else "its size", limit) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        said = str(error).replace(repr(source), str(path))   # Pillow names an upload by its BytesIO object's repr
        raise DataError(
            f"{path}: cannot read as an image ({type(error).__name__}: {said})",
            fix=f"use a {IMAGE_FORMATS} file; this one is damaged or not an image",
        ) from None


def _decode_smaller(image, limit: int) -> bool:
    """Ask a JPEG's decoder for a half, quarter or eighth of its size (the largest under `limit` pixels): True when it
    will decode that small. A 108- or 200-megapixel phone photo is then read in an eighth of the memory or less, and
    the model, which sees a few dozen pixels of it, loses nothing. Other formats cannot decode smaller: False."""
    if image.format != "JPEG":
        return False
    width, height = image.size
    for reduction in (2, 4, 8):                   # the scales a JPEG decoder offers
        decoded = -(-width // reduction) * -(-height // reduction)   # it rounds up
        if decoded <= limit:
            # draft picks the largest reduction that still gives at least the size asked for: ask for the floor
            image.draft(image.mode, (max(width // reduction, 1), max(height // reduction, 1)))
            return image.size[0] * image.size[1] <= limit
    return False


def too_large(path: Path | str, size: str, limit: int = MAX_IMAGE_PIXELS) -> DataError:
    """The message for an image over the limit: a decompression bomb, or a photo far larger than needed."""
    return DataError(f"{path}: {size} is too large to decode (a decompression bomb guard: the limit is "
                     f"{limit / 1_000_000:g} megapixels)",
                     fix="shrink the image first (any image viewer, or `convert -resize 1000x1000`); the model sees it "
                         "at a few dozen pixels anyway")


def _to_channels(image, channels: int, name: str | Path = "the image"):
    """Pillow image in mode L (channels=1) or RGB (channels=3); transparency composited onto white, as viewers show it.
    A colour mode Pillow cannot convert (LAB, HSV, ...) is a DataError naming the file (`name`)."""
    try:
        return _converted(image, channels)
    except ValueError as error:                  # Pillow: "conversion from LAB to RGB not supported"
        raise DataError(f"{name}: its colour mode {image.mode} cannot be turned into gray or RGB ({error})",
                        fix="save it as an ordinary gray or RGB PNG or JPEG") from None


def _converted(image, channels: int):
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit or float gray: scale its range to 0..255 rather than clipping it. In place, in float32 (exact for
        # 16-bit values): a 64-megapixel scan then needs one 256 MB array, not four float64 ones (2 GB).
        values = np.array(image, dtype=np.float32)
        finite = np.isfinite(values)
        if finite.all():
            low, high = float(values.min()), float(values.max())
        else:                                     # a float scan's NaN mask or inf made the whole image black
            low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
            np.nan_to_num(values, copy=False, nan=low, posinf=high, neginf=low)
        del finite
        if high > low:
            values -= low
            values *= 255.0 / (high - low)
            np.rint(values, out=values)
        else:
            values[...] = 0
        image = Image.fromarray(values.astype(np.uint8), mode="L")
    return image.convert("L" if channels == 1 else "RGB")


def border_median(pixels: np.ndarray) -> float:
    """Median gray level (0..255) of an (H, W) or (H, W, C) array's one-pixel border."""
    gray = pixels.mean(axis=2) if pixels.ndim == 3 else pixels
    border = np.concatenate([gray[0, :], gray[-1, :], gray[1:-1, 0], gray[1:-1, -1]])
    return float(np.median(border))


def fit_image(image, height: int, width: int, fill: tuple[int, ...] | int):
    """Resize a Pillow image to fit inside (height, width) with its aspect kept, then pad it centred with `fill`."""
    from PIL import Image

    scale = min(height / image.height, width / image.width)
    new_size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if new_size != image.size:
        image = image.resize(new_size, Image.Resampling.LANCZOS)
    if image.size == (width, height):
        return image
    canvas = Image.new(image.mode, (width, height), fill)
    canvas.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return canvas


def load_image(path: str | Path | bytes, input_shape: tuple[int, int, int], invert: bool | str = "auto",
               max_pixels: int | None = None) -> torch.Tensor:
    """One image file as a uint8 tensor (C, H, W) for a model whose input shape is `input_shape` (H, W, C, Keras's order).

    path: a file or its bytes (open_image). invert: "auto" inverts when the border's median is light (see the module
    docstring); True or False forces it. max_pixels: refuse larger images before decoding them.
    Padding, when the aspect differs, takes the border's median colour, so it matches the background either way.
    """
    height, width, channels = input_shape
    if channels not in (1, 3):
        raise DataError(f"input shape {tuple(input_shape)} has {channels} channels; expected 1 (gray) or 3 (RGB)",
                        fix="use a model whose input has 1 or 3 channels")
    if invert not in ("auto", True, False):
        raise DataError(f"invert={invert!r}; expected 'auto', True or False")
    image = _to_channels(open_image(path, max_pixels=max_pixels), channels,
                         "the upload" if isinstance(path, bytes) else path)
    pixels = np.asarray(image)
    if invert == "auto":
        invert = border_median(pixels) > LIGHT_BACKGROUND
    if invert:
        pixels = 255 - pixels
    fill = np.median(pixels.reshape(-1, channels)[_border_mask(pixels.shape[:2]).reshape(-1)], axis=0)
    fill_value = int(fill[0]) if channels == 1 else tuple(int(value) for value in fill)
    from PIL import Image

    fitted = np.asarray(fit_image(Image.fromarray(np.ascontiguousarray(pixels)), height, width, fill_value))
    if channels == 1:
        fitted = fitted[:, :, None]
    return torch.from_numpy(np.array(fitted.transpose(2, 0, 1)))   # (H, W, C) -> (C, H, W), a writable copy


def _border_mask(shape: tuple[int, int]) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    return mask


def image_lists(image: torch.Tensor) -> list:
    """A uint8 (C, H, W) image as nested lists for a web page to draw: (H, W) for gray, (H, W, 3) for RGB."""
    if image.shape[0] == 1:
        return image[0].tolist()
    return image.permute(1, 2, 0).tolist()
