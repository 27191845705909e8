"""A search for `best`'s settings at equal CPU cost (issue 16), run where trials are cheap: a CUDA card.

usage: python bench/recipe_search.py --costs costs.json --out trials.jsonl [--device cuda] [--workers 14]
                                     [--configs 48] [--deadline 480] [--seed 0]

`best` must train within twice Keras's time for the lab's 5 epochs on the CPU that the benchmark finds, and every knob
measured on the CPU one at a time (BENCHMARKS.md, "Recipe trials") moved validation accuracy by less than the test set
needs. On a CPU each trial takes three minutes; on a CUDA card a dozen run at once in about the time of one. So this
script draws random combinations of the recipe's settings and network, gives each the number of epochs that fits the
recipe's CPU time (costs.json, measured on the CPU by `--measure-costs`), and trains each as bench/recipe_trials.py
does (the first 54,000 training images, validation accuracy on the last 6,000, with and without test-time flips;
never the test set):

1. screen: the recipe as it is and `--configs - 1` random combinations, each on seeds 0 and 1;
2. confirm: the recipe and the best combinations by their screen mean, each on seeds 2 to 5 (a combination chosen as
   the best of many on two seeds is chosen partly for its luck; fresh seeds measure it without that);
3. ceiling: the recipe at twice its epochs, to say how much more time alone would buy.

Each trial is one JSON line in --out as it ends (a trial that fails says why in its line). A CUDA card's floats are
not the CPU's, so what the search picks is measured again on the CPU with bench/recipe_trials.py before it goes
into recipes.py, and the test set only then.

--measure-costs SPECS_FILE (on the CPU, 2 threads): each network's step in bfloat16 autocast at batch 64 and 128, as the
recipe trains, written to --costs as seconds per epoch of 60,000 images.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import random
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

RECIPE = "best"
BATCH_SIZES = (64, 128)
# The networks the search draws from: (first conv, second stage, head). The head's {dropout} is drawn per trial.
NETWORKS = {
    "recipe":        ("conv32x3", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "dense512":      ("conv32x3", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense512,dense"),
    "dense128":      ("conv32x3", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense128,dense"),
    "stage2-48":     ("conv32x3", "conv48x3same,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "one-conv64":    ("conv32x3", "conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "one-conv64-512": ("conv32x3", "conv64x3", "flatten,dropout{dropout},dense512,dense"),
    "first-same":    ("conv32x3same", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "gap128":        ("conv32x3", "conv64x3same,conv64x3", "conv128x3same,gap,dropout{dropout},dense"),
    "first24":       ("conv24x3", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "first16":       ("conv16x3", "conv64x3same,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "bn-between":    ("conv32x3", "conv64x3same,bn,conv64x3", "flatten,dropout{dropout},dense256,dense"),
    "one-conv96":    ("conv32x3", "conv96x3", "flatten,dropout{dropout},dense256,dense"),
}


def network_spec(network: str, dropout: float) -> str:
    first, stage2, head = NETWORKS[network]
    return f"{first},pool2,bn,{stage2},pool2,bn,{head.format(dropout=dropout)}"


def epochs_within(costs: dict, network: str, batch_size: int, budget_seconds: float) -> int:
    """The most epochs of `network` at `batch_size` whose CPU time (costs.json) fits `budget_seconds`."""
    return max(1, math.floor(budget_seconds / costs[network][str(batch_size)] + 0.25))


def draw_config(rng: random.Random, costs: dict, budget_seconds: float) -> dict:
    """One random combination: the network, batch size, peak rate, decay, smoothing, dropout and erasing, with the
    epochs that fit the recipe's CPU time."""
    network = rng.choice(sorted(NETWORKS))
    batch_size = rng.choices(BATCH_SIZES, weights=(0.65, 0.35))[0]
    rate = math.exp(rng.uniform(math.log(0.0015), math.log(0.005))) * (1.5 if batch_size == 128 else 1.0)
    config = {"network": network, "dropout": rng.choice((0.3, 0.35, 0.4, 0.45, 0.5)),
              "batch_size": batch_size, "learning_rate": round(rate, 5),
              "weight_decay": round(math.exp(rng.uniform(math.log(0.003), math.log(0.08))), 4),
              "label_smoothing": rng.choice((0.05, 0.1, 0.1, 0.15)),
              "erase": rng.choices((None, (0.2, 0.2), (0.3, 0.3)), weights=(0.6, 0.2, 0.2))[0]}
    config["epochs"] = epochs_within(costs, network, batch_size, budget_seconds)
    return config


def recipe_config(costs: dict, budget_seconds: float) -> dict:
    """The recipe as recipes.py has it, in the search's terms."""
    return {"network": "recipe", "dropout": 0.4, "batch_size": 64, "learning_rate": 0.003, "weight_decay": 0.01,
            "label_smoothing": 0.1, "erase": None, "epochs": epochs_within(costs, "recipe", 64, budget_seconds)}


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


# --- the workers --------------------------------------------------------------------------------------------------------

_DATASET = None


def _start_worker() -> None:
    global _DATASET
    import torch
    from convolab.data import load_dataset
    torch.set_num_threads(1)
    _DATASET = load_dataset("fashion-mnist", offline=True, progress=False)


def run_one(job: dict) -> dict:
    """Train one (config, seed) as recipe_trials does."""
    from recipe_trials import run_trial
    config, seed, device = job["config"], job["seed"], job["device"]
    changes = {"spec": network_spec(config["network"], config["dropout"]), "epochs": config["epochs"],
               "batch_size": config["batch_size"], "learning_rate": config["learning_rate"],
               "weight_decay": config["weight_decay"], "label_smoothing": config["label_smoothing"]}
    erase = tuple(config["erase"]) if config["erase"] else None
    if time.time() > job["start_by"]:         # too late to end before the deadline: not started
        return {"skipped": True, **job}
    started = time.perf_counter()
    try:
        trial = run_trial(RECIPE, seed, changes, device=device, threads="1", erase=erase, dataset=_DATASET)
    except Exception:                           # recorded in the trial's line; the search goes on
        trial = {"error": traceback.format_exc(limit=8)}
    trial.update(phase=job["phase"], config=config, seed=seed, wall_seconds=round(time.perf_counter() - started, 1))
    return trial


# --- the search ---------------------------------------------------------------------------------------------------------

def mean_accuracy(trials: list[dict], key: str) -> dict[str, tuple[float, int]]:
    """config key -> (mean validation accuracy with flips, number of seeds) over the trials that ended."""
    sums: dict[str, list[float]] = {}
    for trial in trials:
        if "error" not in trial:
            sums.setdefault(config_key(trial["config"]), []).append(trial[key])
    return {config: (sum(values) / len(values), len(values)) for config, values in sums.items()}


def search(args, costs: dict) -> int:
    budget = args.budget_epochs * costs["recipe"]["64"]
    rng = random.Random(args.seed)
    recipe = recipe_config(costs, budget)
    if args.plan:                              # chosen combinations instead of random ones
        with open(args.plan) as stream:
            screen = [{**recipe, **changes, "epochs": changes.get("epochs") or epochs_within(
                costs, changes.get("network", "recipe"), changes.get("batch_size", 64), budget)}
                for changes in json.load(stream)]
    else:
        screen = [recipe] + [draw_config(rng, costs, budget) for _ in range(args.configs - 1)]
    started, wall_started = time.monotonic(), time.time()
    trials: list[dict] = []
    out = open(args.out, "a")

    def record(trial: dict) -> None:
        trials.append(trial)
        out.write(json.dumps(trial) + "\n")
        out.flush()
        shown = ("ERROR " + trial["error"].strip().splitlines()[-1]) if "error" in trial else (
            f"val {trial['val_accuracy']:.4f} flips {trial['val_accuracy_flips']:.4f} "
            f"train {trial['train_accuracy']:.4f} {trial['seconds']:.0f} s ({trial['engine']}, {trial['precision']})")
        print(f"[{time.monotonic() - started:5.0f} s] {trial['phase']} seed {trial['seed']} "
              f"{config_key(trial['config'])}: {shown}", flush=True)

    def run_jobs(pool, jobs: list[dict], start_by: float, stop_at: float) -> None:
        """Every job is handed out at once; the workers skip the ones they reach after start_by (wall clock), and
        no result is waited for after stop_at."""
        pending = [pool.apply_async(run_one, ({**job, "start_by": start_by},)) for job in jobs]
        for result in pending:
            try:
                trial = result.get(timeout=max(0.0, stop_at - time.time()))
            except multiprocessing.TimeoutError:
                return
            if not trial.get("skipped"):
                record(trial)

    context = multiprocessing.get_context("spawn")
    with context.Pool(args.workers, initializer=_start_worker) as pool:
        deadline = wall_started + args.deadline
        jobs = [{"phase": "ceiling", "config": {**recipe, "epochs": 2 * recipe["epochs"]}, "seed": seed,
                 "device": args.device} for seed in (0, 1)] if args.ceiling else []
        jobs += [{"phase": "screen", "config": config, "seed": seed, "device": args.device}
                 for config in screen for seed in (0, 1)]
        run_jobs(pool, jobs, start_by=wall_started + 0.45 * args.deadline, stop_at=deadline)
        screened = mean_accuracy([t for t in trials if t["phase"] == "screen"], "val_accuracy_flips")
        ranked = sorted((config for config, (_, seeds) in screened.items() if seeds == 2),
                        key=lambda config: -screened[config][0])
        chosen = [json.loads(config) for config in ranked[:args.confirm]]
        if config_key(recipe) not in ranked[:args.confirm]:
            chosen.append(recipe)
        durations = sorted(t["wall_seconds"] for t in trials if t["phase"] == "screen" and "error" not in t)
        typical = durations[len(durations) // 2] if durations else 0.0
        confirm = [{"phase": "confirm", "config": config, "seed": seed, "device": args.device}
                   for seed in (2, 3, 4, 5) for config in chosen]
        if args.confirm:
            run_jobs(pool, confirm, start_by=deadline - 1.2 * typical, stop_at=deadline)
        pool.terminate()
    report(trials)
    return 0


def report(trials: list[dict]) -> None:
    """The table at the end: every combination with all its seeds, best mean first."""
    means = mean_accuracy(trials, "val_accuracy_flips")
    print(f"\n{len(trials)} trials, {sum('error' in t for t in trials)} failed. Mean validation accuracy with "
          f"test-time flips over the seeds each combination had (screen and confirm together):")
    for config, (mean, seeds) in sorted(means.items(), key=lambda item: -item[1][0]):
        print(f"  {mean:.4f} over {seeds} seeds  {config}")


def measure_costs(path: str) -> dict:
    """Seconds per epoch of 60,000 images for each network at batch 64 and 128 on this CPU (2 threads, bfloat16
    autocast as the recipe trains where the CPU has it): the median of 5 rounds of 30 steps, networks interleaved."""
    import torch
    import torch.nn.functional as F
    from convolab.engine import accelerate
    from convolab.model import build_model
    from convolab.spec import load_spec
    from convolab.train import make_optimizer
    torch.set_num_threads(2)
    costs: dict[str, dict[str, float]] = {name: {} for name in NETWORKS}
    for batch_size in BATCH_SIZES:
        images, labels = torch.rand(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))
        models = {}
        for name in NETWORKS:
            torch.manual_seed(0)
            model = accelerate(build_model(load_spec(network_spec(name, 0.4)), (28, 28, 1), 10), "cpu",
                               precision="bf16")
            models[name] = (model, make_optimizer("adamw", model.parameters(), 0.003, torch.device("cpu"), 0.01))
        times: dict[str, list[float]] = {name: [] for name in NETWORKS}
        for round_number in range(6):
            for name, (model, optimizer) in models.items():
                steps = 5 if round_number == 0 else 30                 # round 0 warms up
                begun = time.perf_counter()
                for _ in range(steps):
                    optimizer.zero_grad(set_to_none=True)
                    F.cross_entropy(model(images), labels, label_smoothing=0.1).backward()
                    optimizer.step()
                if round_number:
                    times[name].append((time.perf_counter() - begun) / steps)
        for name in NETWORKS:
            step = sorted(times[name])[2]                        # the median of 5
            costs[name][str(batch_size)] = round(step * 60000 / batch_size, 2)
            print(f"batch {batch_size}: {name:16s} {step * 1e3:6.2f} ms a step, {costs[name][str(batch_size)]:6.2f} s "
                  f"an epoch", flush=True)
    with open(path, "w") as stream:
        json.dump(costs, stream, indent=1)
    return costs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--costs", required=True, help="seconds per epoch of each network (written by --measure-costs)")
    parser.add_argument("--measure-costs", action="store_true", help="measure the costs on this CPU and stop")
    parser.add_argument("--out", default="recipe_search.jsonl")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workers", type=int, default=14)
    parser.add_argument("--configs", type=int, default=48, help="combinations screened, the recipe included")
    parser.add_argument("--confirm", type=int, default=7, help="how many of the best go on to seeds 2-5")
    parser.add_argument("--deadline", type=float, default=480, help="seconds; no trial is waited for after it")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random combinations")
    parser.add_argument("--plan", default=None,
                        help="a JSON list of combinations (the recipe's settings changed, e.g. [{\"network\": "
                             "\"dense128\"}]) to screen instead of random ones; epochs fill the budget unless given")
    parser.add_argument("--ceiling", type=int, default=1, help="0: no run of the recipe at twice its epochs")
    parser.add_argument("--budget-epochs", type=float, default=13,
                        help="the CPU time each combination gets, in epochs of the recipe (recipes.py: 13)")
    args = parser.parse_args()
    if args.measure_costs:
        measure_costs(args.costs)
        return 0
    with open(args.costs) as stream:
        costs = json.load(stream)
    return search(args, costs)


if __name__ == "__main__":
    sys.exit(main())
