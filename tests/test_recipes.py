"""Recipes: each is a visible spec plus hyperparameters that TrainConfig accepts and `convolab summary` shows; the
one-cycle schedule and the batch augmentation do what they say."""
from __future__ import annotations

from dataclasses import asdict, replace

import pytest
import torch

from convolab.cli import main
from convolab.errors import TrainingError
from convolab.recipes import RECIPES, augment_batch, get_recipe, learning_rate_at
from convolab.spec import PRESETS, load_spec
from convolab.train import TrainConfig


@pytest.mark.parametrize("name", ["fast", "best"])
def test_each_recipe_is_a_preset_spec_and_a_valid_train_config(name):
    recipe = get_recipe(name)
    assert recipe.spec == PRESETS[name] and load_spec(name).to_line() == recipe.spec
    config = replace(TrainConfig(), **recipe.hyperparameters())
    config.validate()
    assert asdict(config)["schedule"] == recipe.schedule      # what config.json records


def test_an_unknown_recipe_names_the_known_ones():
    with pytest.raises(TrainingError, match="expected one of fast, best"):
        get_recipe("fastest")


def test_one_cycle_warms_up_for_a_fifth_then_decays_to_a_hundredth():
    # Hand-computed for 100 steps, peak 1: 0.1 at step 0, 1.0 at step 20, 0.01 at step 99, linear in between.
    rates = [learning_rate_at(step, 100, 1.0, "onecycle") for step in range(100)]
    assert rates[0] == pytest.approx(0.1) and rates[10] == pytest.approx(0.55)
    assert rates[20] == pytest.approx(1.0) and max(rates) == rates[20]
    assert rates[99] == pytest.approx(0.01)
    assert rates[59] == pytest.approx(1.0 - 0.99 * 39 / 79)
    assert learning_rate_at(7, 100, 0.001, "constant") == 0.001
    with pytest.raises(TrainingError, match="schedule='cosine'"):
        learning_rate_at(0, 100, 1.0, "cosine")


def test_augmentation_mirrors_and_shifts_each_image_without_changing_its_content():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 8, 8)
    images[:, 0, 3:5, 2:4] = torch.rand(64, 1, 1).view(64, 1, 1) + 1.0     # a 2x2 block, one value per image
    flipped = augment_batch(images, "flip")
    mirrored = torch.tensor([torch.equal(out, image.flip(2)) for out, image in zip(flipped, images)])
    kept = torch.tensor([torch.equal(out, image) for out, image in zip(flipped, images)])
    assert bool((mirrored | kept).all()) and 10 < int(mirrored.sum()) < 54
    shifted = augment_batch(images, "crop-flip")
    assert shifted.shape == images.shape
    torch.testing.assert_close(shifted.sum((1, 2, 3)), images.sum((1, 2, 3)))   # a 2-pixel shift keeps the block
    moved = [not (torch.equal(out, image) or torch.equal(out, image.flip(2))) for out, image in zip(shifted, images)]
    assert sum(moved) > 32
    assert augment_batch(images, "none") is images
    with pytest.raises(TrainingError, match="augment='rotate'"):
        augment_batch(images, "rotate")


@pytest.mark.parametrize("field, value, message", [
    ("engine", "turbo", "engine='turbo'"), ("schedule", "cosine", "schedule='cosine'"),
    ("augment", "rotate", "augment='rotate'"), ("label_smoothing", 1.0, "label_smoothing=1.0"),
    ("weight_decay", 0.1, "weight_decay=0.1 with optimizer='adam'"),
])
def test_train_config_rejects_bad_engine_and_recipe_fields(field, value, message):
    with pytest.raises(TrainingError, match=message):
        replace(TrainConfig(), **{field: value}).validate()


def test_summary_of_a_recipe_shows_its_hyperparameters(capsys):
    assert main(["summary", "best"]) == 0
    out = capsys.readouterr().out
    assert "Recipe 'best'" in out and "augment: flip" in out and f"epochs: {RECIPES['best'].epochs}" in out
    assert main(["summary", "cnn"]) == 0
    assert "Recipe" not in capsys.readouterr().out


def test_train_with_a_recipe_and_another_model_is_refused(capsys):
    assert main(["train", "cnn", "--recipe", "fast", "--offline"]) == 2
    assert "--recipe fast brings its own model" in capsys.readouterr().err
