"""FastCAV against exact CAVs: agreement (cosine) and time on cub100 activations.

    python benchmarks/fastcav.py [--classes 20] [--examples 50] [--randoms 5] [--cache /tmp/fastcav]

FastCAV (Schmalwasser et al., ICML 2025) takes as CAV the mean of the concept's activations minus the
mean of all activations (concept and random together): a positive multiple of the difference of the
two sets' means, which is ``CAVBank(solver="mean-difference")``'s direction (its intercept passes
through the midpoint of the two means; FastCAV's through the pooled mean; on balanced sets these are
the same point). So conceptlab's FastCAV is the ``mean-difference`` estimator, and this script
measures what the issue asks of it.

Data: EfficientNet-Lite0 (bundled ImageNet weights) on the first ``--classes`` classes of cub100
(train split, 224 pixels); activations at two places: the pooled features (1,280 values) and the last
feature maps flattened (1280 x 7 x 7 = 62,720 values). Concepts: each class's images; random sets:
images of the other classes. Balanced sets: ``--examples`` a side. Every (class, random set) pair is
fitted by each estimator: ``svm`` (the certified hinge-loss optimum, alpha 0.01, conceptlab's exact
CAV), ``logistic`` (TCAV's default estimator here), scikit-learn's ``SGDClassifier`` as TCAV's
reference code and captum fit it (``sgd``), and ``mean-difference`` (FastCAV).

Reported per layer: cosine of each estimator's CAV to the exact SVM CAV (mean and minimum over pairs),
held-out CAV accuracy, and the time to fit all pairs (best of 3), with the ratio to mean-difference.
No setting was chosen by looking at these results (the estimators run with their defaults).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from conceptlab.concepts import CAVBank

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cub100" / "CUB_200_2011"


def activations(classes: int, cache: Path | None) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Per layer, activations of the train images of the first ``classes`` classes; and their class."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from discovery_cub100 import N_CLASSES, FeatureMaps, load_cub

    key = cache / f"fastcav-{classes}.pt" if cache else None
    if key is not None and key.is_file():
        return torch.load(key)
    assert classes <= N_CLASSES
    images, y, is_train = load_cub()
    keep = is_train & (y < classes)
    images, y = images[keep], y[keep]
    features = FeatureMaps().eval()
    with torch.no_grad():
        maps = torch.cat([features(images[i : i + 32]) for i in range(0, len(images), 32)])
    result = ({"pooled (1,280)": maps.mean((2, 3)), "maps flattened (62,720)": maps.flatten(1)}, y)
    if key is not None:
        key.parent.mkdir(parents=True, exist_ok=True)
        torch.save(result, key)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--examples", type=int, default=50)
    parser.add_argument("--randoms", type=int, default=5)
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    layers, y = activations(args.classes, args.cache)
    rng = np.random.default_rng(0)
    for layer, acts in layers.items():
        sets, pairs = {}, []
        for c in range(args.classes):
            own = np.flatnonzero(y.numpy() == c)
            sets[f"class{c}"] = acts[rng.choice(own, min(args.examples, len(own)), replace=False)]
            count = len(sets[f"class{c}"])
            others = np.flatnonzero(y.numpy() != c)
            for r in range(args.randoms):
                sets[f"random{c}-{r}"] = acts[rng.choice(others, count, replace=False)]
                pairs.append((f"class{c}", f"random{c}-{r}"))
        banks, seconds = {}, {}
        for solver in ("svm", "logistic", "sgd", "mean-difference"):
            times = []
            for _ in range(3):
                start = time.perf_counter()
                banks[solver] = CAVBank(solver, alpha=0.01).fit(sets, pairs)
                times.append(time.perf_counter() - start)
            seconds[solver] = min(times)
        exact = banks["svm"].directions_
        print(f"{layer}: {len(pairs)} balanced pairs of {args.examples} + {args.examples} examples")
        for solver, bank in banks.items():
            cosine = (bank.directions_ * exact).sum(1)
            print(f"  {solver:16s} cosine to the exact SVM CAV: mean {cosine.mean():.3f}, min {cosine.min():.3f}; "
                  f"held-out accuracy {bank.accuracy_.mean():.3f}; fit {seconds[solver]:.3f} s "
                  f"({seconds[solver] / seconds['mean-difference']:.0f}x mean-difference)", flush=True)


if __name__ == "__main__":
    main()
