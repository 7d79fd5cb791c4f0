"""CRAFT side by side with its authors' package (craft-xai) on the same model, images and settings.

    /tmp/craft-env/bin/python benchmarks/craft_authors.py [--split held-out] [--cache /tmp/discovery]

Run with an environment that has craft-xai 0.0.3 from the package registry (``python -m venv
--system-site-packages /tmp/craft-env && /tmp/craft-env/bin/pip install --no-deps craft-xai==0.0.3
opencv-python-headless``). Its ``craft.sobol.sampler`` imports TensorFlow at the top although the
Halton sampler ``craft_torch`` uses never calls it; with no TensorFlow wheel here, an empty
``tensorflow`` module in that environment stands in (named as a difference below).

Same work on both sides: the model and edited images of ``discovery_cub100.py`` (the split's 30
test images of the edited class, at 224 pixels), 20 concepts, 64-pixel crops at stride 51 resized to
224, the feature maps after ReLU6 as g and the pooled linear classifier as h, 32 designs per image
for the importance, on the same 2 CPU threads.

Differences (theirs -> ours): NMF initialised by scikit-learn's default with 200 iterations -> nndsvda
with 500; a Halton sequence -> a scrambled Sobol sequence for the masks; each of their images' Sobol
indices from one batch -> the same estimator (Jansen) on our designs.

Reported: concept overlap (each of their concepts matched to one of ours by the Hungarian method on
the cosine of the NMF bases; mean matched cosine and matches above 0.9), the Spearman correlation of
the matched concepts' importances, the share of crops whose strongest concept is the matched one, and
the time of each side (fit, importance; the faster of two alternating runs) with their ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from discovery_cub100 import build  # noqa: E402

from conceptlab.concepts.discovery import CRAFT  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=["dev", "held-out"], default="held-out")
    parser.add_argument("--cache", type=Path, default=None)
    args = parser.parse_args()
    from craft.craft_torch import Craft

    data = build(args.split, args.cache)
    model, images, target = data["model"], data["images"], data["target"]

    times: dict[str, list[tuple[float, float]]] = {"theirs": [], "ours": []}
    for _ in range(2):  # alternate the sides twice and keep each side's fastest run (the machine is shared)
        start = time.perf_counter()
        ours = CRAFT(20, patch_size=64, stride=51, n_designs=32, seed=0).fit(model, "features", images, head=model.head)
        fitted = time.perf_counter()
        our_importance = ours.importance(model, images, target=target).numpy()
        times["ours"].append((fitted - start, time.perf_counter() - fitted))
        start = time.perf_counter()
        theirs = Craft(input_to_latent=model.features, latent_to_logit=model.head, number_of_concepts=20, patch_size=64,
                       batch_size=64, device="cpu")
        _, their_u, their_w = theirs.fit(images)
        fitted = time.perf_counter()
        their_importance = theirs.estimate_importance(images, class_id=target, nb_design=32)
        times["theirs"].append((fitted - start, time.perf_counter() - fitted))
    (their_fit, their_time), (our_fit, our_time) = (min(times[k], key=sum) for k in ("theirs", "ours"))
    a = their_w / np.linalg.norm(their_w, axis=1, keepdims=True)
    b = ours.basis_.numpy() / np.linalg.norm(ours.basis_.numpy(), axis=1, keepdims=True)
    cosine = a @ b.T
    rows, cols = linear_sum_assignment(-cosine)
    matched = cosine[rows, cols]
    rho = spearmanr(their_importance[rows], our_importance[cols]).statistic
    agree = float(np.mean(np.asarray(their_u).argmax(1) == np.argsort(cols)[ours.coefficients_.numpy().argmax(1)]))
    print(f"{args.split}: concept overlap: mean matched cosine {matched.mean():.3f}, {int((matched > 0.9).sum())} of 20 "
          f"matches above 0.9; importance Spearman {rho:.3f}; crops with the same strongest concept {100 * agree:.1f} %")
    print(f"their top-3 concepts by importance, matched to ours, rank there: "
          f"{[int(np.argsort(-our_importance).tolist().index(cols[list(rows).index(k)])) + 1 for k in np.argsort(-their_importance)[:3]]}")
    print(f"time: craft-xai fit {their_fit:.1f} s + importance {their_time:.1f} s; conceptlab fit {our_fit:.1f} s + "
          f"importance {our_time:.1f} s; ratio (theirs / ours) {(their_fit + their_time) / (our_fit + our_time):.2f}")


if __name__ == "__main__":
    main()
