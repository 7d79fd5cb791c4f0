"""Leakage metrics, measured: the kNN estimator against the analytic Gaussian value, and inter-concept
leakage against the concept correlation of a generator.

    python benchmarks/leakage.py [--seeds 0 1 2 3 4] [--dev] [--json out.json]

1. Estimator check: I(X; Y) of a bivariate Gaussian with correlation rho in {0, 0.3, 0.6, 0.9, 0.99},
   20,000 samples, k = 3, seeds 0..9; the error against -log(1 - rho^2) / 2.
2. Inter-concept leakage (ICL, mean of I(r_i; c_j | c_i) over i != j) of a joint CBM (``cbm-fuzzy``) and a
   CEM (``cem``) on ``correlated_concepts`` (3 concepts, 3,000 samples) at rho in {0, 0.4, 0.8}, with the
   ``correlated9`` config's model and training settings (500 epochs at most, early stopping on the
   validation loss); concepts-task leakage (CTL, I(R; Y | C)) and linear-probe leakage beside it, on the
   test split. The question asked before any run: does ICL rise with rho in every seed? The task (a
   majority of the three concepts) is a function of the concepts, so CTL must be 0 there; a third
   scenario hides concept c3 from every split (rho 0.4), so that the task needs what the two given
   concepts do not say, and CTL and probe leakage measure how much of it the representations carry.

Protocol: the rho grid, the estimator's k and the models were fixed before the first run. ``--dev``
runs development seeds 100 and 101 (used to check the script); the reported seeds are 0..4.
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import numpy as np
import torch

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import load_dataset
from conceptlab.metrics import (
    concepts_task_leakage,
    gaussian_mutual_information,
    interconcept_leakage,
    mutual_information,
    own_representations,
    probe_leakage,
)
from conceptlab.models import predict
from conceptlab.training import fit, seeded

RHOS_GAUSSIAN = (0.0, 0.3, 0.6, 0.9, 0.99)
RHOS = (0.0, 0.4, 0.8)
MODELS = ("cbm-fuzzy", "cem")


def estimator_check(samples: int = 20_000, seeds: int = 10) -> dict[str, dict[str, float]]:
    """Error of the KSG estimate against the analytic value per rho, over ``seeds`` draws."""
    table = {}
    for rho in RHOS_GAUSSIAN:
        errors = []
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal(samples)
            y = rho * x + np.sqrt(1 - rho * rho) * rng.standard_normal(samples)
            errors.append(mutual_information(x, y) - gaussian_mutual_information(rho))
        table[str(rho)] = {"true": gaussian_mutual_information(rho), "mean_error": float(np.mean(errors)),
                           "max_abs_error": float(np.max(np.abs(errors)))}
    return table


def leakage_run(name: str, rho: float, seed: int, hidden: tuple[str, ...] = ()) -> dict[str, float]:
    """Train model key ``name`` on the correlated toy at ``rho`` and score its test-split leakage."""
    spec = load_spec("correlated9")
    splits = load_dataset({"name": "correlated", "size": 3000, "rho": rho, "n_concepts": 3, "hidden_concepts": hidden},
                          seed=seed)
    entry = MODEL_KEYS[name]
    with seeded(seed):
        model = entry.build(splits.train.x.shape[1], splits.info, spec.model)
    fit(model, splits, entry.recipe, config=entry.train_config(replace(spec.train, device="cpu", seed=seed), spec.model))
    test = splits.test
    output = predict(model, test.x)
    representations = own_representations(output, test.c.shape[1])
    return {
        "icl": float(torch.nanmean(interconcept_leakage(representations, test.c))) if test.c.shape[1] > 1 else float("nan"),
        "ctl": concepts_task_leakage(representations, test.c, test.y).value,
        "probe": probe_leakage(representations, test.c, test.y),
        "task_accuracy": float((output.task_logits.argmax(1) == test.y).float().mean()) if output.task_logits.shape[1] > 1
        else float(((output.task_logits[:, 0] > 0).long() == test.y).float().mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--dev", action="store_true", help="run the development seeds 100 and 101 instead")
    parser.add_argument("--skip-models", action="store_true", help="run only the estimator check")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    seeds = [100, 101] if args.dev else args.seeds
    result: dict = {"estimator": estimator_check()}
    print("estimator (nats): " + "; ".join(f"rho {rho}: true {v['true']:.3f}, max |error| {v['max_abs_error']:.4f}"
                                           for rho, v in result["estimator"].items()), flush=True)
    if not args.skip_models:
        runs: dict[str, dict[str, list[dict]]] = {name: {str(rho): [] for rho in RHOS} for name in MODELS}
        for seed in seeds:
            for name in MODELS:
                for rho in RHOS:
                    runs[name][str(rho)].append(leakage_run(name, rho, seed))
                runs[name]["hidden"] = runs[name].get("hidden", []) + [leakage_run(name, 0.4, seed, ("c3 > 0",))]
                row = [runs[name][str(rho)][-1] for rho in RHOS]
                print(f"seed {seed} {name}: ICL (rho " + ", ".join(map(str, RHOS)) + ") " + " -> ".join(f"{r['icl']:.4f}" for r in row)
                      + " | CTL " + ", ".join(f"{r['ctl']:.4f}" for r in row)
                      + " | probe " + ", ".join(f"{r['probe']:+.3f}" for r in row)
                      + f" | c3 hidden: CTL {runs[name]['hidden'][-1]['ctl']:.4f}, probe {runs[name]['hidden'][-1]['probe']:+.3f}",
                      flush=True)
        result["runs"] = runs
        for name in MODELS:
            rising = sum(all(runs[name][str(a)][s]["icl"] < runs[name][str(b)][s]["icl"] for a, b in zip(RHOS, RHOS[1:]))
                         for s in range(len(seeds)))
            means = {str(rho): statistics.mean(r["icl"] for r in runs[name][str(rho)]) for rho in RHOS}
            print(f"{name}: ICL rises with rho in {rising} of {len(seeds)} seeds; mean ICL {means}")
            result[f"{name}_rising"] = rising
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": seeds, **result}, f, indent=1)


if __name__ == "__main__":
    main()
