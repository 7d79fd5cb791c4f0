"""Leakage poisoning: interventions on shifted inputs, CEM against MixCEM (Espinosa Zarlenga et al., ICML 2025).

    python benchmarks/mixcem_shift.py [--seeds 3] [--noise 1.0] [--plot docs/mixcem-shift.png]

Data: the bundled ``incomplete9`` config (``correlated_concepts`` with nine concepts, rho 0.5, four of
them hidden from every split, so the task needs what the five given concepts do not say). Models:
the config's ``cem`` and ``mixcem`` keys with its settings (RandInt 0.25, Adam 0.01, early stopping
on validation loss, up to 500 epochs); MixCEM calibrated on the validation split. The shift: Gaussian
noise of standard deviation ``--noise`` added to every test input (the test concepts and labels are
unchanged). The noise level was fixed before any run (one standard deviation of the inputs' own
noise-free scale) and nothing was tuned on these results.

Reported on the test split, task accuracy in %: the random-policy curve over the five concept groups
(mean of 5 orders), clean and shifted, and the concepts-only ceiling (a majority vote per pattern of
the five given concepts, fitted on the training split).
"""

from __future__ import annotations

import argparse
import json
import statistics
from dataclasses import replace

import torch

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import ConceptDataset, ConceptSplits, load_dataset
from conceptlab.interventions import intervention_curve
from conceptlab.training import fit, seeded

MODELS = ("cem", "mixcem")


def shifted(data: ConceptDataset, noise: float, seed: int) -> ConceptDataset:
    """``data`` with Gaussian noise of standard deviation ``noise`` added to its inputs."""
    generator = torch.Generator().manual_seed(10_000 + seed)
    return ConceptDataset(data.x + noise * torch.randn(data.x.shape, generator=generator), data.c, data.y, data.info)


def ceiling(splits: ConceptSplits) -> float:
    """Test accuracy of the majority class per concept pattern of the training split (unseen patterns: the overall majority)."""
    def key(c: torch.Tensor) -> list[tuple[int, ...]]:
        return [tuple(row) for row in c.long().tolist()]

    votes: dict[tuple[int, ...], list[int]] = {}
    for pattern, label in zip(key(splits.train.c), splits.train.y.tolist()):
        votes.setdefault(pattern, []).append(label)
    overall = max(set(splits.train.y.tolist()), key=splits.train.y.tolist().count)
    majority = {pattern: max(set(labels), key=labels.count) for pattern, labels in votes.items()}
    guesses = [majority.get(pattern, overall) for pattern in key(splits.test.c)]
    return 100 * sum(g == y for g, y in zip(guesses, splits.test.y.tolist())) / len(guesses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--noise", type=float, default=1.0)
    parser.add_argument("--plot", default=None, help="write the curves to this PNG")
    parser.add_argument("--json", default=None, help="write the curves to this JSON file")
    args = parser.parse_args()
    spec = load_spec("incomplete9")
    curves: dict[str, dict[str, list[list[float]]]] = {m: {"clean": [], "shifted": []} for m in MODELS}
    ceilings = []
    for seed in range(args.seeds):
        splits = load_dataset(spec.dataset, seed=seed)
        ceilings.append(ceiling(splits))
        for name in MODELS:
            entry = MODEL_KEYS[name]
            with seeded(seed):
                model = entry.build(splits.train.x.shape[1], splits.info, spec.model)
            fit(model, splits, entry.recipe, config=entry.train_config(replace(spec.train, device="cpu", seed=seed), spec.model))
            for condition, test in (("clean", splits.test), ("shifted", shifted(splits.test, args.noise, seed))):
                curve = intervention_curve(model, test, "random", groups=True, repeats=5, seed=seed)
                curves[name][condition].append([100 * v for v in curve.accuracy_mean])
            print(f"seed {seed} {name}: " + "; ".join(
                f"{condition} {runs[-1][0]:.2f} -> {runs[-1][-1]:.2f}" for condition, runs in curves[name].items()), flush=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    print(f"\nconcepts-only ceiling: {cell(ceilings)}")
    print("\n| model | inputs | no correction | 1 | 2 | 3 | 4 | every group corrected |\n|---|---|---|---|---|---|---|---|")
    for name in MODELS:
        for condition, runs in curves[name].items():
            print(f"| {name} | {condition} | " + " | ".join(cell(list(step)) for step in zip(*runs)) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"noise": args.noise, "ceiling": ceilings, "curves": curves}, handle, indent=1)
    if args.plot:
        plot(curves, statistics.fmean(ceilings), args.noise, args.plot)


def plot(curves: dict[str, dict[str, list[list[float]]]], ceiling_mean: float, noise: float, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=True)
    for axis, condition in zip(axes, ("clean", "shifted")):
        for name, style in zip(MODELS, ("-o", "-s")):
            mean = [statistics.fmean(step) for step in zip(*curves[name][condition])]
            axis.plot(range(len(mean)), mean, style, label=name)
        axis.axhline(ceiling_mean, color="grey", linestyle="--", label="concepts-only ceiling")
        axis.set_title(f"{condition} test inputs" + (f" (noise sd {noise:g})" if condition == "shifted" else ""))
        axis.set_xlabel("concept groups corrected (random order)")
    axes[0].set_ylabel("task accuracy, %")
    axes[0].legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
