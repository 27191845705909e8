"""convolab.data: real Fashion-MNIST, the IDX reader on every corruption, sources, downloads, image folders, batches."""
from __future__ import annotations

import gzip
import json
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from convolab import data
from convolab.data import download, idx, load
from convolab.data import (DATASETS, load_dataset, read_idx, split_validation, iterate_batches, describe_dataset,
                           load_image_folder)
from convolab.data.load import source_to_record
from convolab.errors import DataError
from idx_fixtures import DEBIAN, MirrorServer, gz, idx_bytes, isolated_cache, make_tiny, needs_debian  # noqa: F401


@pytest.fixture(scope="session")
def fashion(tmp_path_factory):
    """The real Fashion-MNIST, loaded once per session from the system copy (offline, with an empty cache)."""
    if not DEBIAN.is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("session-cache")))
        patch.delenv("CONVOLAB_DATA_DIR", raising=False)
        return load_dataset("fashion-mnist", offline=True, progress=False)


@pytest.fixture
def tiny(monkeypatch):
    """A generated 3-class dataset registered as 'tiny' (content hashes and gzip MD5s known)."""
    dataset = make_tiny()
    monkeypatch.setitem(DATASETS, "tiny", dataset.info())
    return dataset


# --- real Fashion-MNIST ----------------------------------------------------------------------------------------------

@needs_debian
def test_fashion_mnist_from_the_system_copy_is_whole_and_verified(fashion):
    assert fashion.source == f"system copy {DEBIAN}"
    assert fashion.train_images.shape == (60000, 1, 28, 28) and fashion.train_images.dtype == torch.uint8
    assert fashion.test_images.shape == (10000, 1, 28, 28)
    assert fashion.train_labels.dtype == torch.int64
    assert torch.bincount(fashion.train_labels).tolist() == [6000] * 10
    assert torch.bincount(fashion.test_labels).tolist() == [1000] * 10
    assert fashion.class_names[0] == "T-shirt/top" and fashion.class_names[9] == "Ankle boot"
    assert fashion.input_shape == (28, 28, 1) and fashion.num_classes == 10
    assert fashion.verdict == "verified"
    expected = {file.role: file.content_sha256 for file in DATASETS["fashion-mnist"].files}
    assert {check.role: check.content_sha256 for check in fashion.checks} == expected
    assert all(check.how == "content SHA-256 matches convolab's table" for check in fashion.checks)


@needs_debian
def test_fashion_mnist_content_hashes_match_an_independent_computation():
    # The registry's hashes against hashlib over gzip.open, file by file: what `zcat FILE | sha256sum` prints.
    for file in DATASETS["fashion-mnist"].files:
        with gzip.open(DEBIAN / file.filename) as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == file.content_sha256, file.filename


@needs_debian
def test_first_training_labels_are_the_published_ones(fashion):
    # Zalando's README and Keras's tutorial: the first training labels are ankle boot, T-shirt, T-shirt, dress, T-shirt.
    assert fashion.train_labels[:5].tolist() == [9, 0, 0, 3, 0]


@needs_debian
def test_channels_and_image_size_apply_to_the_whole_tensor(fashion, monkeypatch):
    images = load._reshape_images(fashion.test_images[:50], channels=3, image_size=(28, 56))
    assert images.shape == (50, 3, 28, 56) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 2])
    # Aspect kept: the 28x28 image sits unchanged in the middle, zero padding left and right.
    assert torch.equal(images[:, 0, :, 14:42], fashion.test_images[:50, 0])
    assert images[:, :, :, :14].max() == 0 and images[:, :, :, 42:].max() == 0


# --- the IDX reader --------------------------------------------------------------------------------------------------

def test_read_idx_reads_raw_and_gzipped_files_identically(tmp_path):
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    (tmp_path / "raw").write_bytes(idx_bytes(array))
    (tmp_path / "zipped").write_bytes(gz(idx_bytes(array)))
    raw, zipped = read_idx(tmp_path / "raw", 2051), read_idx(tmp_path / "zipped", 2051)
    assert np.array_equal(raw.array, array) and np.array_equal(zipped.array, array)
    assert raw.content_sha256 == zipped.content_sha256 == hashlib.sha256(idx_bytes(array)).hexdigest()
    assert (raw.gzipped, zipped.gzipped) == (False, True)


def test_read_idx_honours_big_endian_element_types(tmp_path):
    values = np.array([1, -2, 70000], dtype=">i4")
    (tmp_path / "ints").write_bytes(bytes([0, 0, 0x0C, 1]) + (3).to_bytes(4, "big") + values.tobytes())
    assert read_idx(tmp_path / "ints").array.tolist() == [1, -2, 70000]


def test_truncated_gzip_is_refused_with_the_file_named(tmp_path):
    whole = gz(idx_bytes(np.zeros((100, 28, 28), dtype=np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match="truncated gzip") as caught:
        read_idx(path)
    assert str(path) in str(caught.value) and caught.value.fix


def test_garbage_after_the_gzip_magic_is_refused(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(b"\x1f\x8b" + b"not deflate at all" * 10)
    with pytest.raises(DataError, match="not a valid gzip stream"):
        read_idx(path)


@pytest.mark.parametrize("header", [b"PK\x03\x04", b"\x00\x00\x07\x01", b"\x00\x00\x08\x00", b"\x01\x00\x08\x01"])
def test_wrong_magic_numbers_are_refused(tmp_path, header):
    path = tmp_path / "labels"
    path.write_bytes(header + (4).to_bytes(4, "big") + bytes(4))
    with pytest.raises(DataError, match="wrong magic number"):
        read_idx(path)


def test_labels_where_images_are_expected_are_refused(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(idx_bytes(np.zeros(10, dtype=np.uint8)))
    with pytest.raises(DataError, match=r"wrong magic number 2049 .*expected 2051"):
        read_idx(path, expected_magic=2051)


def test_truncated_and_oversized_payloads_are_refused(tmp_path):
    content = idx_bytes(np.ones((3, 4, 4), dtype=np.uint8))
    (tmp_path / "short").write_bytes(content[:-5])
    (tmp_path / "long").write_bytes(content + b"\x00" * 7)
    with pytest.raises(DataError, match="truncated payload: 43 bytes"):
        read_idx(tmp_path / "short")
    with pytest.raises(DataError, match="oversized payload: 55 bytes"):
        read_idx(tmp_path / "long")


def test_dimensions_are_checked_against_the_registry(tmp_path):
    path = tmp_path / "images"
    path.write_bytes(idx_bytes(np.zeros((5, 28, 27), dtype=np.uint8)))
    with pytest.raises(DataError, match="dimensions 5x28x27; expected Nx28x28"):
        read_idx(path, 2051, (None, 28, 28))


def test_a_gzip_bomb_stops_at_the_size_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1000)
    path = tmp_path / "bomb.gz"
    path.write_bytes(gz(b"\x00" * 5000))
    with pytest.raises(DataError, match="decompresses to more than 1,000 bytes"):
        read_idx(path)


def peak_allocation(function) -> tuple[int, Exception | None]:
    """The most memory Python and NumPy held at once while `function` ran (tracemalloc), and what it raised."""
    import tracemalloc

    tracemalloc.start()
    try:
        function()
        raised = None
    except Exception as error:  # noqa: BLE001 - returned for the test to check
        raised = error
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, raised


def test_a_gzip_bomb_behind_a_valid_header_is_refused_without_inflating_it(tmp_path, monkeypatch):
    # Issue 9, cause 17: a small gzip with a valid IDX header and a flood of zeros used to be inflated up to the size
    # limit before any check; the header's declared size now decides, and the extra bytes are only counted.
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 48 << 20)
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    header = idx_bytes(np.zeros((10, 28, 28), dtype=np.uint8))
    path.write_bytes(gzip.compress(header + bytes(80 << 20), compresslevel=1))
    peak, raised = peak_allocation(lambda: read_idx(path, 2051))
    assert isinstance(raised, DataError) and "oversized payload: more than" in raised.message
    assert peak < 8 << 20, f"peak {peak:,} bytes"


def test_a_header_declaring_more_than_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(idx, "MAX_IDX_BYTES", 1000)
    path = tmp_path / "huge"
    path.write_bytes(bytes([0, 0, 8, 3]) + b"".join(size.to_bytes(4, "big") for size in (60000, 28, 28)))
    with pytest.raises(DataError, match=r"decompresses to more than 1,000 bytes \(its header declares 60000x28x28"):
        read_idx(path)


def test_a_large_file_with_a_wrong_magic_number_is_refused_after_its_header(tmp_path):
    # Issue 9, cause 17: the whole file used to be read before its first four bytes were checked.
    path = tmp_path / "video.mp4"
    with open(path, "wb") as handle:
        handle.write(b"\x00\x00\x00\x20ftypisom")
        handle.truncate(64 << 20)   # sparse: costs no disk
    peak, raised = peak_allocation(lambda: read_idx(path))
    assert isinstance(raised, DataError) and "wrong magic number" in raised.message
    assert peak < 1 << 20, f"peak {peak:,} bytes"


# --- sources: data_dir, cache, system, download ----------------------------------------------------------------------

def test_data_dir_gzipped_or_raw_is_verified_by_content(tiny, tmp_path):
    for compressed in (True, False):
        directory = tiny.write(tmp_path / f"copy-{compressed}", compressed=compressed)
        dataset = load_dataset("tiny", data_dir=directory, offline=True)
        assert dataset.source == f"{directory} (--data-dir)"
        assert dataset.verdict == "verified"
        assert torch.equal(dataset.train_images[:, 0], torch.from_numpy(tiny.arrays["train-images-idx3-ubyte.gz"]))
        assert dataset.test_labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_a_whole_raw_copy_beside_a_damaged_gzip_one_is_used(tiny, tmp_path):
    directory = tiny.write(tmp_path / "copy")
    name = "t10k-labels-idx1-ubyte.gz"
    (directory / name[: -len(".gz")]).write_bytes(tiny.contents[name])          # `gunzip -k`: both names
    (directory / name).write_bytes(tiny.gzipped[name][:20])                      # then the .gz was damaged
    dataset = load_dataset("tiny", data_dir=directory, offline=True)             # was: "truncated gzip file"
    assert dataset.verdict == "verified" and dataset.test_labels.tolist() == [0, 1, 2, 0, 1, 2]
    (directory / name[: -len(".gz")]).write_bytes(tiny.contents[name][:-2])      # both damaged: the .gz is named
    with pytest.raises(DataError, match=f"{name}: truncated gzip file"):
        load_dataset("tiny", data_dir=directory, offline=True)


def test_a_data_dir_that_is_a_file_is_called_a_file(tiny, tmp_path, monkeypatch):
    (tmp_path / "fashion.zip").write_bytes(b"PK\x03\x04")
    monkeypatch.setenv("CONVOLAB_DATA_DIR", str(tmp_path / "fashion.zip"))
    with pytest.raises(DataError, match=r"fashion.zip \(CONVOLAB_DATA_DIR\): a file, not a directory"):   # was: "no such"
        load_dataset("tiny", offline=True)


def test_environment_variable_and_dataset_subfolder(tiny, tmp_path, monkeypatch):
    tiny.write(tmp_path / "all-data" / "tiny")
    monkeypatch.setenv("CONVOLAB_DATA_DIR", str(tmp_path / "all-data"))
    dataset = load_dataset("tiny", offline=True)
    assert dataset.source == f"{tmp_path / 'all-data' / 'tiny'} (CONVOLAB_DATA_DIR)"


def test_counts_that_disagree_are_refused(tiny, tmp_path):
    directory = tiny.write(tmp_path / "copy")
    (directory / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(np.zeros(5, dtype=np.uint8))))
    with pytest.raises(DataError) as caught:
        load_dataset("tiny", data_dir=directory, offline=True)
    # The content hash catches the swapped file first; without hashes, the count check does.
    assert "checksum mismatch" in str(caught.value)
    DATASETS["tiny"] = tiny.info(content_hashes=False, md5s=False)
    with pytest.raises(DataError, match="test counts disagree: 6 images but 5 labels"):
        load_dataset("tiny", data_dir=directory, offline=True)


def test_checksum_mismatch_names_the_file_and_searches_no_further(tiny, tmp_path):
    directory = tiny.write(tmp_path / "copy")
    bad = directory / "train-images-idx3-ubyte.gz"
    bad.write_bytes(gz(idx_bytes(np.zeros((12, 4, 4), dtype=np.uint8))))
    with pytest.raises(DataError) as caught:
        load_dataset("tiny", data_dir=directory, offline=True)
    message = str(caught.value)
    assert f"{bad}: checksum mismatch" in message
    assert "--data-dir was given, so no other place was searched" in message


def test_a_file_of_another_dataset_is_named_as_such(tiny, tmp_path, monkeypatch):
    # "twin" has no content hashes (like MNIST); handing it tiny's files must not pass as "unverified".
    monkeypatch.setitem(DATASETS, "twin", make_tiny(seed=1).info(name="twin", content_hashes=False))
    directory = tiny.write(tmp_path / "copy")
    with pytest.raises(DataError, match="belongs to another dataset .it is tiny's train images"):
        load_dataset("twin", data_dir=directory, offline=True)


def test_without_content_hashes_the_mirror_md5_verifies_and_a_recompressed_copy_is_unverified(tmp_path, monkeypatch):
    tiny = make_tiny()
    monkeypatch.setitem(DATASETS, "tiny", tiny.info(content_hashes=False))
    dataset = load_dataset("tiny", data_dir=tiny.write(tmp_path / "mirror-copy"), offline=True)
    assert dataset.verdict == "verified" and all("MD5" in check.how for check in dataset.checks)
    raw = load_dataset("tiny", data_dir=tiny.write(tmp_path / "raw-copy", compressed=False), offline=True)
    assert raw.verdict == "unverified"
    assert "no published checksum" in describe_dataset(raw)


def test_nothing_found_lists_every_place_and_the_fixes(tiny, isolated_cache, monkeypatch):
    monkeypatch.setitem(DATASETS, "tiny", tiny.info(mirrors=("https://example.invalid/tiny/",)))
    with pytest.raises(DataError) as caught:
        load_dataset("tiny", offline=True)
    message = str(caught.value)
    assert f"cache {isolated_cache / 'convolab' / 'tiny'}: no such directory" in message
    assert "not tried: offline" in message
    assert "--data-dir" in message and "https://example.invalid/tiny/train-images-idx3-ubyte.gz" in message
    assert "run without --offline" in message


def test_missing_fashion_mnist_suggests_the_debian_package(monkeypatch, tmp_path):
    info = DATASETS["fashion-mnist"]
    monkeypatch.setitem(DATASETS, "fashion-mnist",
                        data.DatasetInfo(**{**info.__dict__, "system_dirs": (str(tmp_path / "nowhere"),)}))
    with pytest.raises(DataError) as caught:
        load_dataset("fashion-mnist", offline=True)
    message = str(caught.value)
    assert "the dataset-fashion-mnist package is not installed" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/train-images-idx3-ubyte.gz" in message


def test_mnist_offline_explains_what_is_missing():
    with pytest.raises(DataError) as caught:
        load_dataset("mnist", offline=True)
    message = str(caught.value)
    assert "none known (no Debian or Ubuntu package ships mnist)" in message
    assert "https://ossci-datasets.s3.amazonaws.com/mnist/t10k-labels-idx1-ubyte.gz" in message
    assert "https://storage.googleapis.com/cvdf-datasets/mnist/" in message


def test_unknown_dataset_name_lists_the_known_ones():
    with pytest.raises(DataError, match="unknown dataset 'cifar10'; expected one of fashion-mnist, mnist"):
        load_dataset("cifar10")


def test_loading_is_one_loop_over_source_objects(tmp_path):
    from convolab.data.sources import Cache, ChosenDirectory, Download, SystemCopies, sources_for

    assert [type(source) for source in sources_for(None, offline=True, progress=False)] == [Cache, SystemCopies,
                                                                                            Download]
    assert sources_for(tmp_path, offline=False, progress=False) == [ChosenDirectory(tmp_path, "--data-dir")]


class NpzReader:
    """A reader for a made-up colour format (one .npz file): what a future colour dataset would add."""

    def present(self, directory, info):
        return [path for path in [directory / "data.npz"] if path.is_file()]

    def read(self, directory, info):
        from convolab.data.readers import Splits

        if not self.present(directory, info):
            raise DataError("no data.npz")
        arrays = {key: torch.from_numpy(value) for key, value in np.load(directory / "data.npz").items()}
        return Splits(arrays["train_images"], arrays["train_labels"], arrays["test_images"], arrays["test_labels"],
                      checks=())

    def check_download(self, path, file):
        raise DataError("no mirror")


def test_a_colour_dataset_is_one_registry_entry_and_one_reader(tmp_path, monkeypatch):
    from convolab.data.readers import READERS

    generator = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", train_images=generator.integers(0, 256, (6, 3, 5, 5), dtype=np.uint8),
             train_labels=np.arange(6) % 2, test_images=generator.integers(0, 256, (2, 3, 5, 5), dtype=np.uint8),
             test_labels=np.arange(2))
    monkeypatch.setitem(READERS, "npz", NpzReader())
    monkeypatch.setitem(DATASETS, "colour", data.DatasetInfo(name="colour", title="Colour test set", class_names=(
        "a", "b"), files=(), mirrors=(), system_dirs=(), reader="npz"))
    dataset = load_dataset("colour", data_dir=tmp_path, offline=True)
    assert dataset.input_shape == (5, 5, 3) and dataset.num_classes == 2 and dataset.verdict == "not applicable"
    assert dataset.source == f"{tmp_path} (--data-dir)"
    with pytest.raises(DataError, match=r"(?s)cache .*colour: no such directory.*not tried: offline"):
        load_dataset("colour", offline=True)


# --- download against a local server ---------------------------------------------------------------------------------

@pytest.fixture
def mirror(tiny):
    wrong = make_tiny(seed=7)
    with MirrorServer(tiny.gzipped, wrong.gzipped) as server:
        yield server


def use_mirrors(tiny, monkeypatch, *mirrors, **options):
    monkeypatch.setitem(DATASETS, "tiny", tiny.info(mirrors=mirrors, **options))


def test_download_fills_the_cache_with_verified_files(tiny, mirror, isolated_cache, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("good"))
    dataset = load_dataset("tiny", progress=True)   # the rich progress bar goes to stderr
    cache = isolated_cache / "convolab" / "tiny"
    assert dataset.source == f"downloaded into cache {cache}" and dataset.verdict == "verified"
    assert sorted(path.name for path in cache.iterdir()) == sorted(tiny.gzipped)   # no temporary file left
    again = load_dataset("tiny", offline=True)
    assert again.source == f"cache {cache}" and len(mirror.requests) == 4


def test_download_falls_over_to_the_next_mirror_after_retries(tiny, mirror, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("error"), mirror.url("good"))
    dataset = load_dataset("tiny", progress=False)
    assert dataset.verdict == "verified"
    assert sum(request.startswith("/error/") for request in mirror.requests) == 4 * download.DOWNLOAD_ATTEMPTS


def test_http_error_everywhere_is_reported_per_mirror(tiny, mirror, isolated_cache, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("error"))
    with pytest.raises(DataError, match=r"every mirror failed:\n.*/error/train-images-idx3-ubyte.gz: HTTP 503 Service Unavailable \(x2\)"):
        load_dataset("tiny", progress=False)
    assert not (isolated_cache / "convolab" / "tiny").exists()   # no partial file, no empty folder


def test_wrong_checksum_download_is_never_kept(tiny, mirror, isolated_cache, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("bad"))
    with pytest.raises(DataError, match="checksum mismatch"):
        load_dataset("tiny", progress=False)
    assert not (isolated_cache / "convolab" / "tiny").exists()   # no partial file, no empty folder
    assert len(mirror.requests) == 1   # a mirror serving wrong bytes is not asked twice


def test_a_transfer_cut_halfway_leaves_no_file(tiny, mirror, isolated_cache, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("cut"))
    with pytest.raises(DataError, match=r"transfer cut after \d[\d,]* of [\d,]+ bytes"):
        load_dataset("tiny", progress=False)
    assert not (isolated_cache / "convolab" / "tiny").exists()   # no partial file, no empty folder


def test_offline_never_contacts_the_mirror(tiny, mirror, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("good"))
    with pytest.raises(DataError, match="not tried: offline"):
        load_dataset("tiny", offline=True)
    assert mirror.requests == []


def test_a_download_verified_by_md5_records_the_content_hash(tiny, mirror, isolated_cache, monkeypatch):
    use_mirrors(tiny, monkeypatch, mirror.url("good"), content_hashes=False)
    first = load_dataset("tiny", progress=False)
    assert first.verdict == "verified"
    recorded = (isolated_cache / "convolab" / "tiny" / "content-sha256.json").read_text()
    assert hashlib.sha256(tiny.contents["t10k-images-idx3-ubyte.gz"]).hexdigest() in recorded
    # A raw copy elsewhere is now verified by the recorded hash, and a wrong one is caught.
    raw = load_dataset("tiny", data_dir=tiny.write(Path(isolated_cache.parent / "raw"), compressed=False), offline=True)
    assert raw.verdict == "verified" and "recorded at the first verified download" in raw.checks[0].how


def test_a_bad_cache_file_is_set_aside_and_fetched_again(tiny, mirror, isolated_cache, monkeypatch):
    cache = tiny.write(isolated_cache / "convolab" / "tiny")
    (cache / "train-labels-idx1-ubyte.gz").write_bytes(tiny.gzipped["train-labels-idx1-ubyte.gz"][:-20])
    use_mirrors(tiny, monkeypatch, mirror.url("good"))
    with pytest.raises(DataError, match="set aside as train-labels-idx1-ubyte.gz.corrupt"):
        load_dataset("tiny", offline=True)
    assert (cache / "train-labels-idx1-ubyte.gz.corrupt").exists()
    assert not (cache / "train-labels-idx1-ubyte.gz").exists()
    dataset = load_dataset("tiny", progress=False)
    assert dataset.verdict == "verified" and mirror.requests == ["/good/train-labels-idx1-ubyte.gz"]
    assert dataset.looked[0].endswith("missing train-labels-idx1-ubyte.gz")


# --- image folders ---------------------------------------------------------------------------------------------------

def make_folder(root: Path, counts: dict[str, int], color: bool = False, size=(10, 6)) -> Path:
    from PIL import Image

    formats = ["png", "jpeg", "bmp", "gif", "webp"]
    for class_index, (name, count) in enumerate(counts.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            value = 40 * class_index + 10
            image = Image.new("RGB" if color else "L", size, (value, 0, 0) if color else value)
            suffix = formats[index % len(formats)]
            image.save(root / name / f"{index}.{'jpg' if suffix == 'jpeg' else suffix}", format=suffix.upper())
    return root


def test_a_run_fitted_on_a_loaded_folder_in_python_reloads_its_data_from_any_folder(tmp_path, monkeypatch, capsys):
    from convolab import Dense, Flatten, Sequential
    from convolab.cli import main

    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "shapes", {"dark": 12, "light": 12})
    dataset = load_dataset("shapes", progress=False)               # relative to this folder, as a notebook would
    assert dataset.options["source"] == str(tmp_path / "shapes")
    model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(2, activation="softmax")])
    model.fit(dataset, epochs=1, out=tmp_path / "run", verbose=False)
    monkeypatch.chdir(tmp_path.parent)                             # elsewhere: the run still finds its images
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["test_count"] == len(dataset.test_labels)


@pytest.mark.parametrize("given", [Path, str], ids=["a Path", "a relative str"])
def test_a_run_fitted_in_python_on_a_folder_by_path_records_it_absolute(tmp_path, monkeypatch, capsys, given):
    from convolab import Dense, Flatten, Sequential
    from convolab.cli import main

    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "shapes", {"dark": 12, "light": 12})
    model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(2, activation="softmax")])
    # Was: fit(Path("shapes")) failed writing config.json (a PosixPath is not JSON), and fit("shapes") recorded
    # "shapes", which evaluate from any other folder took for an unknown dataset's name.
    model.fit(given("shapes"), epochs=1, out=tmp_path / "run", verbose=False)
    monkeypatch.chdir(tmp_path.parent)
    assert main(["evaluate", str(tmp_path / "run"), "--json"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["test_count"] == 4            # round(12 * 0.2) of each class


def test_a_run_trained_on_a_relative_folder_by_the_cli_finds_it_from_any_folder(tmp_path, monkeypatch, capsys):
    from convolab.cli import main

    (tmp_path / "project").mkdir()
    make_folder(tmp_path / "project" / "pics", {"dark": 12, "light": 12})
    monkeypatch.chdir(tmp_path / "project")
    assert main(["train", "flatten,dense", "--data", "pics", "--epochs", "1", "--quiet", "--out", "../run"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["dataset"]["options"]["source"] == str(tmp_path / "project" / "pics")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["evaluate", "run", "--json"]) == 0, capsys.readouterr().err
    assert main(["train", "--resume", "run", "--epochs", "2", "--quiet"]) == 0, capsys.readouterr().err


def test_image_folder_split_by_fraction_is_stratified_and_seeded(tmp_path):
    root = make_folder(tmp_path / "shapes", {"circle": 10, "square": 5, "star": 5})
    first = load_dataset(str(root), test_split=0.2, seed=3)
    assert first.class_names == ("circle", "square", "star")
    assert torch.bincount(first.test_labels).tolist() == [2, 1, 1]
    assert torch.bincount(first.train_labels).tolist() == [8, 4, 4]
    assert first.input_shape == (28, 28, 1) and first.train_images.dtype == torch.uint8
    second = load_dataset(root, test_split=0.2, seed=3)
    assert torch.equal(first.test_images, second.test_images)
    assert first.source.startswith(f"image folder {root}") and "seed 3" in first.source


def test_image_folder_with_train_and_test_subfolders_and_bad_files(tmp_path):
    make_folder(tmp_path / "set" / "train", {"cat": 3, "dog": 3}, color=True)
    make_folder(tmp_path / "set" / "test", {"cat": 1, "dog": 2}, color=True)
    (tmp_path / "set" / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "set" / "test" / "dog" / "empty.jpg").write_bytes(b"")
    (tmp_path / "set" / "train" / "dog" / "notes.txt").write_text("taken at the park")
    (tmp_path / "set" / "train" / "dog" / ".DS_Store").write_bytes(b"\0")   # hidden: not worth a mention
    dataset = load_image_folder(tmp_path / "set", image_size=(8, 8))
    assert dataset.input_shape == (8, 8, 3)   # colour images: 3 channels chosen
    assert torch.bincount(dataset.train_labels).tolist() == [3, 3]
    assert torch.bincount(dataset.test_labels).tolist() == [1, 2]
    assert len(dataset.skipped_files) == 3
    assert any("broken.png: cannot read as an image" in reason for reason in dataset.skipped_files)
    assert any("notes.txt: not an image type" in reason for reason in dataset.skipped_files)
    report = describe_dataset(dataset)
    assert "files left out: 3" in report and "empty.jpg" in report


def test_a_test_split_that_takes_every_image_of_a_class_says_so(tmp_path):
    make_folder(tmp_path / "one", {"a": 1, "b": 1})
    with pytest.raises(DataError, match="the test split held every one of their images out") as caught:
        load_image_folder(tmp_path / "one", test_split=0.9)
    assert "lower --test-split" in caught.value.fix


def test_an_image_folder_with_no_readable_image_names_its_files(tmp_path):
    for name in ("cat", "dog"):
        (tmp_path / "set" / name).mkdir(parents=True)
        for index in range(3):
            (tmp_path / "set" / name / f"{index}.png").write_text("x")      # named .png, not an image
    with pytest.raises(DataError, match="no readable training images for class\\(es\\) cat, dog") as caught:
        load_image_folder(tmp_path / "set")
    assert "0.png: cannot read as an image" in caught.value.message


def test_image_folder_channels_can_be_forced(tmp_path):
    root = make_folder(tmp_path / "c", {"a": 2, "b": 2}, color=True)
    assert load_dataset(root, channels=1, image_size=(6, 6)).input_shape == (6, 6, 1)


@pytest.mark.parametrize("counts, message", [({"only": 3}, "one class"), ({}, "no class subfolders"),
                                             ({"a": 2, "b": 0}, "class folder.s. with no image files: b")])
def test_image_folder_needs_two_classes_with_images(tmp_path, counts, message):
    root = make_folder(tmp_path / "f", counts)
    root.mkdir(exist_ok=True)
    with pytest.raises(DataError, match=message):
        load_dataset(root)


@pytest.mark.parametrize("beside", ["val", None])
def test_half_a_train_test_layout_is_refused_not_read_as_two_classes(tmp_path, beside):
    # Was: train/ and val/ (or train/ alone) read as classes named "train" and "val", their images found in the
    # subfolders, and trained without a word.
    make_folder(tmp_path / "set" / "train", {"cat": 2, "dog": 2})
    if beside:
        make_folder(tmp_path / "set" / beside, {"cat": 1, "dog": 1})
    with pytest.raises(DataError, match="train/ holds class folders .cat, dog. but there is no test/ folder") as caught:
        load_dataset(tmp_path / "set")
    assert ("rename val/ to test/" in caught.value.fix) == (beside == "val")


def test_a_val_folder_beside_train_and_test_is_named_as_not_read(tmp_path, recwarn):
    # Was: train/, test/ and val/ loaded train/ and test/, and val/ was left out without a word.
    from convolab.data.folders import UnreadFolderWarning

    for split in ("train", "test", "val"):
        make_folder(tmp_path / "set" / split, {"cat": 1, "dog": 1})
    with pytest.warns(UnreadFolderWarning, match=r"val/ beside train/ and test/ is not read: .* name it test/"):
        dataset = load_dataset(tmp_path / "set")
    assert len(dataset.train_labels) == len(dataset.test_labels) == 2
    shutil.rmtree(tmp_path / "set" / "val")
    load_dataset(tmp_path / "set")                     # train/ and test/ alone: no warning
    assert not [warning for warning in recwarn if warning.category is UnreadFolderWarning]


def test_a_class_named_train_holding_its_own_images_is_a_class(tmp_path):
    root = make_folder(tmp_path / "vehicles", {"train": 2, "car": 2})
    make_folder(root / "car", {"old": 1})          # a nested folder inside a class is still that class's
    assert load_dataset(root, test_split=0.0).class_names == ("car", "train")


def test_tiff_netpbm_and_browser_jpeg_names_are_read_from_folders_as_predict_reads_them(tmp_path):
    from PIL import Image

    # Was: "not an image type" for each, and a class of them "with no image files".
    formats = {".tif": "TIFF", ".TIFF": "TIFF", ".pgm": "PPM", ".ppm": "PPM", ".jfif": "JPEG", ".jpe": "JPEG"}
    for name, value in (("dark", 20), ("light", 230)):
        (tmp_path / "set" / name).mkdir(parents=True)
        for suffix, kind in formats.items():
            Image.new("RGB" if suffix == ".ppm" else "L", (6, 6), (value,) * 3 if suffix == ".ppm" else value).save(
                tmp_path / "set" / name / f"x{suffix}", format=kind)
    dataset = load_dataset(tmp_path / "set", test_split=0.0)
    assert torch.bincount(dataset.train_labels).tolist() == [6, 6] and not dataset.skipped_files


def test_a_class_of_files_convolab_cannot_read_says_what_they_are(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2})
    (root / "b").mkdir()
    for index in range(3):
        (root / "b" / f"IMG_{index}.HEIC").write_bytes(b"\0")   # an iPhone's photos
    with pytest.raises(DataError, match=r"no image files: b \(they hold 3 file.s. of other types: .heic; expected PNG"):
        load_dataset(root)


def test_a_macs_zip_metadata_and_hidden_folders_are_not_data(tmp_path):
    root = make_folder(tmp_path / "set", {"cat": 3, "dog": 3})
    for name in ("0.png", "1.jpg"):                  # what unzipping a Mac's archive leaves: Finder metadata
        (root / "__MACOSX" / "cat").mkdir(parents=True, exist_ok=True)
        (root / "__MACOSX" / "cat" / f"._{name}").write_bytes(b"\0\5\26\7 metadata")
        (root / "cat" / f"._{name}").write_bytes(b"\0\5\26\7 metadata")
    (root / "cat" / ".thumbnails").mkdir()            # a viewer's cache: a dog's picture would have counted as a cat
    shutil.copy(root / "dog" / "0.png", root / "cat" / ".thumbnails" / "0.png")
    # Was: a class named __MACOSX with no readable image, the whole folder refused; the ._ files listed as unreadable.
    dataset = load_dataset(root, test_split=0.0)
    assert dataset.class_names == ("cat", "dog") and not dataset.skipped_files
    assert torch.bincount(dataset.train_labels).tolist() == [3, 3]


def test_a_class_whose_files_are_all_unreadable_is_an_error(tmp_path):
    root = make_folder(tmp_path / "f", {"a": 2})
    (root / "b").mkdir()
    (root / "b" / "x.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"no readable training images for class\(es\) b .1 file.s. left out: .*x.png: cannot read"):
        load_dataset(root)


@pytest.mark.parametrize("argument, said", [
    ({"test_split": "0.2"}, "test_split='0.2'; expected a fraction"),          # was: TypeError from `<=`
    ({"seed": "0"}, "seed='0'; expected a whole number"),                      # was: RuntimeError from manual_seed
    ({"seed": 1.5}, "seed=1.5; expected a whole number"),
    ({"seed": 2**64}, "seed=18446744073709551616; expected a whole number"),   # was: ValueError (overflow)
    ({"seed": -1}, "seed=-1; expected a whole number from 0"),                # was accepted; --seed -1 is refused
    ({"channels": True}, "channels=True; expected 1 .gray. or 3"),             # was: TypeError, True == 1
    ({"image_size": True}, "image_size=True; expected .height, width."),       # was: a 1x1 image
    ({"image_size": (28.5, 28)}, r"image_size=\(28.5, 28\); expected \(height, width\) in whole pixels"),   # was: 28
])
def test_python_arguments_of_the_wrong_type_are_named(tmp_path, argument, said):
    root = make_folder(tmp_path / "f", {"a": 5, "b": 5})
    with pytest.raises(DataError, match=said):
        load_dataset(root, progress=False, **argument)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        load_dataset(str(tmp_path / "absent"))
    (tmp_path / "photo.png").write_bytes(b"x")
    with pytest.raises(DataError, match="photo.png: a file, not a folder of images") as caught:   # was: "no such folder"
        load_dataset(tmp_path / "photo.png")
    assert "convolab predict RUN" in caught.value.fix


def test_an_empty_dataset_name_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch):
    make_folder(tmp_path / "here", {"a": 2, "b": 2})
    monkeypatch.chdir(tmp_path / "here")             # was: --data "$UNSET" trained on the current folder's subfolders
    for empty in ("", " "):
        assert source_to_record(empty) == empty
        with pytest.raises(DataError, match="dataset '\\s*': empty; expected a dataset name or a folder"):
            load_dataset(empty)


# --- validation split and batches ------------------------------------------------------------------------------------

def test_split_validation_holds_out_the_last_part_as_keras():
    images, labels = torch.arange(10).view(10, 1, 1, 1).to(torch.uint8), torch.arange(10)
    (train_images, train_labels), (val_images, val_labels) = split_validation(images, labels, 0.25)
    # Keras: split_at = int(10 * (1 - 0.25)) = 7.
    assert train_labels.tolist() == list(range(7)) and val_labels.tolist() == [7, 8, 9]
    assert val_images.flatten().tolist() == [7, 8, 9]
    (_, all_labels), (_, none) = split_validation(images, labels, 0.0)
    assert len(all_labels) == 10 and len(none) == 0
    with pytest.raises(DataError, match="validation_split=1.0"):
        split_validation(images, labels, 1.0)


def test_iterate_batches_covers_every_sample_once_scaled_to_unit_range():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1) * 25
    labels = torch.arange(10)
    batches = list(iterate_batches(images, labels, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert [len(batch_labels) for _, batch_labels in batches] == [4, 4, 2]
    seen = torch.cat([batch_labels for _, batch_labels in batches])
    assert sorted(seen.tolist()) == list(range(10)) and seen.tolist() != list(range(10))
    for batch_images, batch_labels in batches:
        assert batch_images.dtype == torch.float32
        assert torch.allclose(batch_images.flatten(), batch_labels.float() * 25 / 255)
    repeat = list(iterate_batches(images, labels, 4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(torch.cat([b for _, b in repeat]), seen)
    ordered = torch.cat([b for _, b in iterate_batches(images, labels, 3)])
    assert ordered.tolist() == list(range(10))
    with pytest.raises(DataError, match="batch_size=0"):
        next(iterate_batches(images, labels, 0))
