"""Datasets as verified tensors. One module per concern, read top-down like loading itself:

    idx.py        the IDX format: header checked first, payload streamed within a size limit
    registry.py   the datasets known by name (classes, files, checksums, mirrors, system copies, reader), the cache root
    checksums.py  proving a file is the dataset's own
    readers.py    a copy in one directory -> verified tensors (READERS: "idx" today)
    download.py   mirrors -> the cache
    sources.py    where copies are looked for (--data-dir, cache, system copies, download): one loop, one error
    folders.py    image folders as datasets
    streaming.py  image folders larger than memory: decoded once into a cache, read batch by batch
    dataset.py    Dataset, and the report `convolab data` prints
    load.py       load_dataset: the one entry point
    batches.py    the validation split and batches

`from convolab.data import load_dataset, Dataset, ...` is the public way in; the names below are that interface.
"""
from convolab.data.batches import iterate_batches, split_validation
from convolab.data.checksums import FileCheck
from convolab.data.dataset import Dataset, describe_dataset
from convolab.data.folders import DEFAULT_FOLDER_IMAGE_SIZE, class_name_text, load_image_folder
from convolab.data.idx import IdxContent, read_idx
from convolab.data.load import load_dataset
from convolab.data.registry import DATASETS, DEFAULT_DATASET, DatasetInfo, IdxFile, cache_root, dataset_info
from convolab.data.sources import load_registry_dataset

__all__ = [
    "DATASETS", "DEFAULT_DATASET", "DEFAULT_FOLDER_IMAGE_SIZE", "Dataset", "DatasetInfo", "FileCheck", "IdxContent",
    "IdxFile", "cache_root", "class_name_text", "dataset_info", "describe_dataset", "iterate_batches", "load_dataset", "load_image_folder",
    "load_registry_dataset", "read_idx", "split_validation",
]
