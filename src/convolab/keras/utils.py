"""keras.utils: to_categorical and set_random_seed, the two the course's notebooks call."""
from __future__ import annotations

import random

import numpy as np
import torch

from convolab.keras.arrays import to_keras_one_hot
from convolab.keras.surface import unsupported


def to_categorical(x, num_classes: int | None = None) -> np.ndarray:
    """Class numbers -> one-hot rows (float32), for loss='categorical_crossentropy'."""
    return to_keras_one_hot(x, num_classes)


def set_random_seed(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (a model's weights are seeded by convolab already)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# Keras's ways into a folder of images, or one image: convolab has its own, named in the refusal.
IMAGE_LOADERS = ("image_dataset_from_directory", "load_img", "img_to_array")
NATIVE_IMAGES = ("a folder with one subfolder of images per class is read by convolab.data.load_dataset('photos/') "
                 "(then Sequential.fit, or `convolab train --data photos/`), and one image by model.predict('x.png')")


def __getattr__(name: str):
    raise unsupported(f"keras.utils.{name}", ["to_categorical", "set_random_seed"],
                      NATIVE_IMAGES if name in IMAGE_LOADERS else "")
