"""Recipes: each is a visible spec plus hyperparameters that TrainConfig accepts and `convolab summary` shows; the
one-cycle schedule and the batch augmentation do what they say."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import pytest
import torch

from convolab.cli import main
from convolab.data import iterate_batches
from convolab.errors import TrainingError
from convolab.evaluate import evaluate_model, predict_logits, render_evaluation
from convolab.recipes import RECIPES, augment_batch, get_recipe, learning_rate_at, mirror_average, recipe_precision
from convolab.runs import load_run
from convolab.spec import PRESETS, load_spec
from convolab.train import TrainConfig, evaluate


@pytest.mark.parametrize("name", ["fast", "best"])
def test_each_recipe_is_a_preset_spec_and_a_valid_train_config(name):
    recipe = get_recipe(name)
    assert recipe.spec == PRESETS[name] and load_spec(name).to_line() == recipe.spec
    config = replace(TrainConfig(), **recipe.hyperparameters())
    config.validate()
    assert asdict(config)["schedule"] == recipe.schedule      # what config.json records


def test_a_recipe_trains_in_bf16_only_on_bfloat16_hardware_and_an_explicit_precision_wins():
    assert recipe_precision("bf16", "auto", bf16_hardware=True) == "bf16"
    assert recipe_precision("bf16", "auto", bf16_hardware=False) == "auto"      # emulated bfloat16 is slower
    assert recipe_precision("auto", "auto", bf16_hardware=True) == "auto"       # the lab's recipe: never by itself
    assert recipe_precision("bf16", "fp32", bf16_hardware=True) == "fp32"       # --precision fp32 wins
    assert recipe_precision("auto", "bf16", bf16_hardware=False) == "bf16"      # and so does --precision bf16
    recipe = replace(get_recipe("fast"), precision="bf16")
    base = TrainConfig(seed=3)
    assert recipe.train_config(base, bf16_hardware=True).precision == "bf16"
    assert recipe.train_config(base, bf16_hardware=False).precision == "auto"
    assert recipe.train_config(replace(base, precision="fp32"), bf16_hardware=True).precision == "fp32"
    assert recipe.train_config(base, epochs=2, bf16_hardware=True).epochs == 2


def test_a_recipe_run_records_the_precision_it_trained_in(tmp_path, capsys, monkeypatch):
    # This machine's CPU may or may not have bfloat16 hardware: pretend it has none, then that it has AVX512-BF16.
    import convolab.experiment as experiment

    name = next(name for name, recipe in RECIPES.items() if recipe.precision == "bf16")
    for flags, expected in ((set(), "auto"), ({"avx512_bf16"}, "bf16")):
        monkeypatch.setattr(experiment, "cpu_flags", lambda: flags)
        out = tmp_path / f"{name}-{expected}"
        assert main(["train", "--recipe", name, "--epochs", "1", "--train-limit", "64", "--test-limit", "32",
                     "--device", "cpu", "--out", str(out), "--offline", "--quiet"]) == 0
        assert json.loads((out / "config.json").read_text())["train"]["precision"] == expected
    out = tmp_path / f"{name}-fp32"
    assert main(["train", "--recipe", name, "--epochs", "1", "--train-limit", "64", "--test-limit", "32",
                 "--device", "cpu", "--precision", "fp32", "--out", str(out), "--offline", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == "fp32"
    out = tmp_path / f"{name}-reference"       # the reference engine runs float32 only: no bf16 forced on it
    assert main(["train", "--recipe", name, "--epochs", "1", "--train-limit", "64", "--test-limit", "32",
                 "--device", "cpu", "--engine", "reference", "--out", str(out), "--offline", "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["precision"] == "auto"
    capsys.readouterr()


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
    ("weight_decay", 0.1, "weight_decay=0.1 with optimizer='adam'"), ("test_time_flip", "yes", "test_time_flip='yes'"),
])
def test_train_config_rejects_bad_engine_and_recipe_fields(field, value, message):
    with pytest.raises(TrainingError, match=message):
        replace(TrainConfig(), **{field: value}).validate()


def test_summary_of_a_recipe_shows_its_hyperparameters(capsys):
    assert main(["summary", "best"]) == 0
    out = capsys.readouterr().out
    assert "Recipe 'best'" in out and "augment: flip" in out and f"epochs: {RECIPES['best'].epochs}" in out
    assert "test_time_flip: True" in out and "why:" in out and "mirror" in out
    assert "precision: bf16 where the CPU has AMX or AVX512-BF16" in out
    assert main(["summary", "cnn"]) == 0
    assert "Recipe" not in capsys.readouterr().out


def test_train_with_a_recipe_and_another_model_is_refused(capsys):
    assert main(["train", "cnn", "--recipe", "fast", "--offline"]) == 2
    assert "--recipe fast brings its own model" in capsys.readouterr().err


# --- test-time flips ----------------------------------------------------------------------------------------------------

class LeftRight(torch.nn.Module):
    """Two images of 1x1x2 pixels (a, b) scaled to [0, 1]: logits (a, 2b), so that the mirror (b, a) gives (b, 2a)."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pixels = images.flatten(1)                                       # (N, 2)
        return torch.stack([pixels[:, 0], 2 * pixels[:, 1]], dim=1)      # (N, 2)


# Image 0: (a, b) = (0.6, 0.2): logits (0.6, 0.4), mirror (0.2, 1.2), mean (0.4, 0.8): class 0 alone, class 1 with flips.
# Image 1: (a, b) = (0.2, 0.6): logits (0.2, 1.2), mirror (0.6, 0.4), mean (0.4, 0.8): class 1 either way.
FLIP_IMAGES = torch.tensor([[[[153, 51]]], [[[51, 153]]]], dtype=torch.uint8)   # (2, 1, 1, 2); 153/255 = 0.6
FLIP_LABELS = torch.tensor([1, 1])


def test_mirror_average_is_the_mean_of_the_two_views_logits():
    torch.testing.assert_close(mirror_average(torch.tensor([[0.6, 0.4]]), torch.tensor([[0.2, 1.2]])),
                               torch.tensor([[0.4, 0.8]]))


def test_test_time_flips_average_each_image_with_its_mirror_in_evaluate_and_in_validation():
    model = LeftRight()
    plain = predict_logits(model, FLIP_IMAGES)
    flipped = predict_logits(model, FLIP_IMAGES, test_time_flip=True)
    torch.testing.assert_close(plain, torch.tensor([[0.6, 0.4], [0.2, 1.2]]))
    torch.testing.assert_close(flipped, torch.tensor([[0.4, 0.8], [0.4, 0.8]]))
    evaluation = evaluate_model(model, FLIP_IMAGES, FLIP_LABELS, ["left", "right"], test_time_flip=True)
    assert evaluation.accuracy == 1.0 and evaluate_model(model, FLIP_IMAGES, FLIP_LABELS, ["l", "r"]).accuracy == 0.5
    assert evaluation.to_dict()["test_time_flip"] is True and "test-time flips" in render_evaluation(evaluation)
    # training's validation (train.evaluate) measures the same way, so that val_accuracy chooses what the test measures
    validation = evaluate(model, iterate_batches(FLIP_IMAGES, FLIP_LABELS, 1), test_time_flip=True)
    assert validation["accuracy"] == 1.0
    assert evaluate(model, iterate_batches(FLIP_IMAGES, FLIP_LABELS, 1))["accuracy"] == 0.5


def test_a_recipe_with_test_time_flips_records_them_and_evaluate_measures_its_run_the_same_way(tmp_path, capsys):
    name = next(name for name, recipe in RECIPES.items() if recipe.test_time_flip)
    out = tmp_path / name
    assert main(["train", "--recipe", name, "--epochs", "1", "--train-limit", "256", "--test-limit", "200",
                 "--out", str(out), "--offline", "--quiet"]) == 0
    capsys.readouterr()
    assert json.loads((out / "config.json").read_text())["train"]["test_time_flip"] is True
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_time_flip"] is True
    assert main(["evaluate", str(out), "--test-limit", "200", "--offline", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_time_flip"] is True and evaluated["test_accuracy"] == metrics["test_accuracy"]
    # against the model's two views computed here
    run = load_run(out)
    images, labels = run.test_data()
    images, labels = images[:200], labels[:200]
    logits = mirror_average(predict_logits(run.model, images), predict_logits(run.model, images.flip(3)))
    assert evaluated["test_accuracy"] == pytest.approx(float((logits.argmax(1) == labels).double().mean()))
