"""convolab.images.load_image on generated pictures: formats, channels, aspect, inversion, EXIF, unreadable files."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from convolab.errors import DataError
from convolab.images import border_median, load_image, open_image


def dark_square(size=(20, 20), square=(5, 15), background=0, foreground=255, mode="L") -> Image.Image:
    """A light square on a dark background (Fashion-MNIST's polarity) unless the colours say otherwise."""
    pixels = np.full((size[1], size[0]), background, dtype=np.uint8)
    pixels[square[0]:square[1], square[0]:square[1]] = foreground
    image = Image.fromarray(pixels, mode="L")
    return image.convert(mode) if mode != "L" else image


def test_a_dark_background_image_is_kept_as_it_is(tmp_path):
    path = tmp_path / "dark.png"
    dark_square().save(path)
    tensor = load_image(path, (20, 20, 1))
    assert tensor.shape == (1, 20, 20) and tensor.dtype == torch.uint8
    assert tensor[0, 0, 0] == 0 and tensor[0, 10, 10] == 255


def test_a_light_background_image_is_inverted_to_light_on_dark(tmp_path):
    path = tmp_path / "light.jpg"
    dark_square(background=250, foreground=10).save(path, quality=95)
    tensor = load_image(path, (20, 20, 1))
    assert tensor[0, 0, 0] <= 10 and tensor[0, 10, 10] >= 240
    forced = load_image(path, (20, 20, 1), invert=False)
    assert forced[0, 0, 0] >= 245 and forced[0, 10, 10] <= 15
    flipped = load_image(tmp_path / "light.jpg", (20, 20, 1), invert=True)
    assert torch.equal(flipped, tensor)


def test_invert_true_forces_a_dark_image_negative(tmp_path):
    path = tmp_path / "dark.png"
    dark_square().save(path)
    assert load_image(path, (20, 20, 1), invert=True)[0, 0, 0] == 255


def test_border_median_ignores_an_object_touching_the_edge():
    pixels = np.full((10, 10), 240, dtype=np.uint8)
    pixels[:, :3] = 0   # an object covering the left edge: 10 of the 36 border pixels
    assert border_median(pixels) == 240


def test_aspect_is_kept_and_the_padding_matches_the_background(tmp_path):
    # A 40x20 (wide) picture, a white bar on dark gray 30, into 20x20: it becomes 20x10, centred, and the rows above and
    # below are padded with the border's median, 30, so no black frame appears around it.
    pixels = np.full((20, 40), 30, dtype=np.uint8)
    pixels[6:14, 6:34] = 255
    path = tmp_path / "wide.png"
    Image.fromarray(pixels, mode="L").save(path)
    tensor = load_image(path, (20, 20, 1), invert=False)
    assert tensor.shape == (1, 20, 20)
    assert tensor[0, :5].unique().tolist() == [30] and tensor[0, 15:].unique().tolist() == [30]   # padding rows
    assert tensor[0, 10, 10] >= 240                                       # the bar, scaled, in the middle
    assert tensor[0, 5:15, 0].float().mean() < 40                         # the picture's own background at the edge


def test_colour_becomes_gray_by_luma_and_gray_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "red.bmp"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(path)
    gray = load_image(path, (8, 8, 1), invert=False)
    assert gray.unique().tolist() == [round(0.299 * 200)]
    rgb = load_image(path, (8, 8, 3), invert=False)
    assert rgb.shape == (3, 8, 8) and rgb[:, 0, 0].tolist() == [200, 0, 0]
    gray_path = tmp_path / "gray.png"
    dark_square().save(gray_path)
    three = load_image(gray_path, (20, 20, 3))
    assert torch.equal(three[0], three[1]) and torch.equal(three[1], three[2])


@pytest.mark.parametrize("suffix, fmt", [("gif", "GIF"), ("webp", "WEBP"), ("bmp", "BMP"), ("jpeg", "JPEG")])
def test_common_formats_load(tmp_path, suffix, fmt):
    path = tmp_path / f"picture.{suffix}"
    dark_square(mode="RGB").save(path, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    tensor = load_image(path, (10, 10, 1))
    assert tensor.shape == (1, 10, 10)
    assert tensor[0, 0, 0] < 30 and tensor[0, 5, 5] > 220


def test_exif_orientation_is_honoured(tmp_path):
    # Stored 40 wide x 20 high with a white block at the left; EXIF orientation 6 means "rotate 90 degrees clockwise
    # to display", so shown upright it is 20 wide x 40 high with the block at the top.
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    tensor = load_image(path, (40, 20, 1), invert=False)
    assert tensor.shape == (1, 40, 20)
    assert tensor[0, :8].float().mean() > 240 and tensor[0, 12:].float().mean() < 15


def test_transparent_background_counts_as_white(tmp_path):
    pixels = np.zeros((20, 20, 4), dtype=np.uint8)
    pixels[5:15, 5:15] = (0, 0, 0, 255)   # an opaque black square, transparent around it
    path = tmp_path / "cutout.png"
    Image.fromarray(pixels, mode="RGBA").save(path)
    tensor = load_image(path, (20, 20, 1))   # composited on white, then inverted: white square on black
    assert tensor[0, 0, 0] == 0 and tensor[0, 10, 10] == 255


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    pixels = np.zeros((10, 10), dtype=np.uint16)
    pixels[3:7, 3:7] = 60000
    path = tmp_path / "deep.png"
    Image.fromarray(pixels).save(path)
    tensor = load_image(path, (10, 10, 1), invert=False)
    assert tensor[0, 0, 0] == 0 and tensor[0, 5, 5] == 255


def test_a_large_sixteen_bit_scan_is_scaled_in_one_float32_array(tmp_path):
    import tracemalloc

    pixels = (np.arange(1000 * 1000, dtype=np.uint32) % 4096).astype(np.uint16).reshape(1000, 1000)   # 12-bit ramps
    path = tmp_path / "scan.png"
    Image.fromarray(pixels).save(path)
    tracemalloc.start()
    tensor = load_image(path, (1000, 1000, 1), invert=False)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    # Was: four float64 copies (8 MB each here; 2 GB for a 64-megapixel scan). Now one float32 array and the result.
    assert peak < 4 * 1000 * 1000 * 2.5, f"{peak:,} bytes"
    assert torch.equal(tensor[0], torch.from_numpy(np.rint(pixels / 4095 * 255).astype(np.uint8)))


def test_a_float_scans_nan_and_infinite_values_do_not_black_out_the_image(tmp_path):
    values = np.tile(np.linspace(0.0, 1.0, 10, dtype=np.float32), (10, 1))       # a left-to-right ramp
    values[0, 0], values[9, 9] = np.nan, np.inf                                    # a mask's NaN, a saturated pixel
    Image.fromarray(values, mode="F").save(tmp_path / "scan.tiff")
    tensor = load_image(tmp_path / "scan.tiff", (10, 10, 1), invert=False)[0]     # was: every pixel 0
    assert tensor[5].tolist() == np.rint(np.linspace(0, 255, 10)).astype(int).tolist()
    assert tensor[0, 0] == 0 and tensor[9, 9] == 255                               # NaN as the lowest, inf the highest


def test_unreadable_and_missing_files_name_the_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture")
    with pytest.raises(DataError, match="notes.png: cannot read as an image") as caught:
        load_image(path, (28, 28, 1))
    assert caught.value.fix
    truncated = tmp_path / "cut.jpg"
    dark_square(size=(64, 64), square=(10, 50)).save(truncated, quality=95)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match="cut.jpg: cannot read as an image"):
        load_image(truncated, (28, 28, 1))
    with pytest.raises(DataError, match="absent.png: no such image file"):
        load_image(tmp_path / "absent.png", (28, 28, 1))
    (tmp_path / "empty.jpg").write_bytes(b"")      # was: "cannot identify image file", as for a text file
    for empty, named in ((tmp_path / "empty.jpg", "empty.jpg"), (b"", "the upload")):
        with pytest.raises(DataError, match=f"{named}: an empty file \\(0 bytes\\), not an image"):
            load_image(empty, (28, 28, 1))


def test_a_colour_mode_without_gray_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (20, 20)).save(path)                # a TIFF in CIE L*a*b*: Pillow cannot make it gray
    with pytest.raises(DataError, match="lab.tif: its colour mode LAB cannot be turned into gray or RGB"):
        load_image(path, (28, 28, 1))
    with pytest.raises(DataError, match="the upload: its colour mode LAB"):
        load_image(path.read_bytes(), (28, 28, 1))


def test_a_folder_or_a_pipe_is_no_image_and_never_blocks(tmp_path):
    with pytest.raises(DataError, match="a folder, not an image file"):
        load_image(tmp_path, (28, 28, 1))
    pipe = tmp_path / "fifo.png"
    os.mkfifo(pipe)                               # reading it would wait forever for a writer
    with pytest.raises(DataError, match="not a regular file"):
        load_image(pipe, (28, 28, 1))


def test_bad_arguments_are_refused(tmp_path):
    path = tmp_path / "ok.png"
    dark_square().save(path)
    with pytest.raises(DataError, match="has 4 channels; expected 1 .gray. or 3 .RGB."):
        load_image(path, (28, 28, 4))
    with pytest.raises(DataError, match="invert='sometimes'"):
        load_image(path, (28, 28, 1), invert="sometimes")


# --- uploads: bytes, sizes, bombs -------------------------------------------------------------------------------------

def test_an_image_given_as_bytes_reads_like_its_file(tmp_path):
    import io

    pixels = (np.arange(40 * 30).reshape(40, 30) % 251).astype(np.uint8)
    path = tmp_path / "a.png"
    Image.fromarray(pixels).save(path)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    assert torch.equal(load_image(buffer.getvalue(), (28, 28, 1)), load_image(path, (28, 28, 1)))
    with pytest.raises(DataError, match="the upload: cannot read as an image"):
        load_image(b"not an image", (28, 28, 1))


def test_too_many_pixels_are_refused_before_decoding(tmp_path):
    path = tmp_path / "big.png"
    Image.new("L", (300, 200)).save(path)
    with pytest.raises(DataError, match="300x200 pixels is too large to decode .* limit is 0.05 megapixels"):
        load_image(path, (28, 28, 1), max_pixels=50_000)
    assert load_image(path, (28, 28, 1), max_pixels=60_000).shape == (1, 28, 28)


def test_a_jpeg_over_the_limit_is_decoded_smaller_instead_of_refused(tmp_path):
    # a 108-megapixel phone photo, scaled down: its decoder is asked for an eighth, a quarter or a half of the size
    rows, cols = np.mgrid[0:400, 0:300]
    pixels = ((rows // 50 + cols // 50) % 2 * 255).astype(np.uint8)   # 50-pixel squares
    path = tmp_path / "photo.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    assert open_image(path, max_pixels=30_000).size == (150, 200)        # 120,000 pixels: a half is under 30,000
    assert open_image(path, max_pixels=2_000).size == (38, 50)           # an eighth
    smaller = load_image(path, (28, 28, 1), max_pixels=30_000).float()
    whole = load_image(path, (28, 28, 1)).float()
    assert (smaller - whole).abs().mean() < 8, "the same picture, decoded at a quarter of the pixels"
    with pytest.raises(DataError, match="400x300|300x400"):            # even an eighth is over 1,000 pixels
        open_image(path, max_pixels=1_000)
    Image.fromarray(pixels).save(tmp_path / "photo.png")               # a PNG cannot decode smaller: refused as before
    with pytest.raises(DataError, match="too large to decode"):
        open_image(tmp_path / "photo.png", max_pixels=30_000)
