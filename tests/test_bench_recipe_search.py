"""bench/recipe_search.py's own arithmetic: every network it draws builds, the epochs fill the recipe's CPU time and no
more, random combinations stay in their ranges and repeat with their seed, and failed trials do not count."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from convolab.model import build_model
from convolab.recipes import RECIPES
from convolab.spec import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import recipe_search  # noqa: E402 - the search script lives beside the other benchmarks

COSTS = {name: {"64": 10.0, "128": 8.0} for name in recipe_search.NETWORKS} | {"recipe": {"64": 13.0, "128": 12.0}}


@pytest.mark.parametrize("network", sorted(recipe_search.NETWORKS))
def test_every_network_builds_for_fashion_mnist(network):
    model = build_model(load_spec(recipe_search.network_spec(network, 0.35)), (28, 28, 1), 10)
    assert model.num_classes == 10


def test_the_recipe_network_is_the_recipe_spec():
    assert recipe_search.network_spec("recipe", 0.4) == RECIPES["best"].spec
    recipe = recipe_search.recipe_config(COSTS, budget_seconds=13 * 13.0)
    assert (recipe["epochs"], recipe["batch_size"], recipe["learning_rate"]) == (
        RECIPES["best"].epochs, RECIPES["best"].batch_size, RECIPES["best"].learning_rate)


@pytest.mark.parametrize("seconds_an_epoch, budget, epochs", [
    (13.0, 169.0, 13),        # the recipe itself
    (10.0, 169.0, 17),        # 16.9 epochs fit: a quarter over the whole number is allowed (the +0.25)
    (10.0, 167.0, 16),        # 16.7: not
    (400.0, 169.0, 1),        # never none
])
def test_epochs_fill_the_budget(seconds_an_epoch, budget, epochs):
    costs = {"recipe": {"64": seconds_an_epoch}}
    assert recipe_search.epochs_within(costs, "recipe", 64, budget) == epochs


def test_random_combinations_repeat_with_their_seed_and_stay_in_range():
    draws = [recipe_search.draw_config(random.Random(7), COSTS, 169.0) for _ in range(2)]
    assert draws[0] == draws[1]
    for config in (recipe_search.draw_config(random.Random(seed), COSTS, 169.0) for seed in range(200)):
        assert config["network"] in recipe_search.NETWORKS and config["batch_size"] in (64, 128)
        assert 0.0015 <= config["learning_rate"] <= 0.005 * 1.5 and 0.003 <= config["weight_decay"] <= 0.08
        assert config["epochs"] * COSTS[config["network"]][str(config["batch_size"])] <= 169.0 + 0.25 * 13


def test_failed_trials_do_not_count_in_the_means():
    config = {"network": "recipe"}
    trials = [{"config": config, "val_accuracy_flips": 0.94}, {"config": config, "val_accuracy_flips": 0.96},
              {"config": config, "error": "Traceback ..."}]
    assert recipe_search.mean_accuracy(trials, "val_accuracy_flips") == {json.dumps(config): (pytest.approx(0.95), 2)}
