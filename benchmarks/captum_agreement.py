"""TCAV scores of conceptlab against captum's, per kind of concept, in the same run.

    pip install captum
    python benchmarks/captum_agreement.py [--captum-runs 5]

A small CNN is trained on 32 px images whose class 1 carries horizontal stripes (the planted
cause). TCAV for class 1 at its last convolution, against 5 random sets of noise images, for
three kinds of concept: *real* (stripes), *irrelevant* (a red tint that both classes carry
alike) and *random* (another set of noise images). Each library fits its own CAVs: conceptlab
the exact SVM, captum its default SGDClassifier on a random 67/33 split. captum is run
``--captum-runs`` times with different seeds, so its disagreement with itself (other splits,
other SGD paths) is measured beside its disagreement with conceptlab. Two solver-free references
say which CAV to believe: the cosine of each captum CAV with the exact SVM direction, and the
score along the difference of the two sets' mean activations.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import tempfile
import warnings
from collections import OrderedDict

import torch
from torch import nn

from conceptlab.concepts import CAVBank, capture_activations, layer_gradients, tcav_scores

SIZE = 32
LAYER = "conv2"


def images(n: int, generator: torch.Generator, stripes: bool = False, tint: bool = False) -> torch.Tensor:
    x = 0.5 + 0.2 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    if stripes:
        x[:, :, ::4, :] = 0.05
    if tint:
        x[:, 0] += 0.3
    return x.clamp(0, 1)


def train_cnn(generator: torch.Generator) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 8, 3, padding=1), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
        conv2=nn.Conv2d(8, 16, 3, padding=1), relu2=nn.ReLU(), pool2=nn.AdaptiveAvgPool2d(4),
        flatten=nn.Flatten(), fc=nn.Linear(16 * 16, 2)))
    tinted = torch.rand(1000, generator=generator) < 0.5  # the tint is independent of the class
    y = torch.arange(1000) % 2
    x = torch.cat([images(1, generator, stripes=bool(c), tint=bool(t)) for c, t in zip(y, tinted)])
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(4):
        for batch in torch.randperm(1000, generator=generator).split(50):
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    accuracy = float((model(x).argmax(1) == y).float().mean())
    print(f"CNN training accuracy: {accuracy:.3f}")
    return model.eval()


def ours(model, concepts, randoms, inputs) -> tuple[dict, dict, dict, dict]:
    """Per pair: conceptlab's score, its CAV, the score along the mean-activation difference, and
    the SVM objective that SGD (captum's classifier settings) reaches over the exact optimum."""
    sets = {**concepts, **randoms}
    acts = {k: capture_activations(model, [LAYER], v)[LAYER] for k, v in sets.items()}
    pairs = list(itertools.product(concepts, randoms))
    bank = CAVBank().fit(acts, pairs)
    sgd = CAVBank("sgd").fit(acts, pairs)  # SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3), as captum
    excess = dict(zip(pairs, (sgd.objective_ / bank.objective_).tolist()))
    gradients = layer_gradients(model, LAYER, inputs, target=1)
    scores, _ = tcav_scores(gradients, bank)
    means = {(c, r): float((gradients @ (acts[c].mean(0) - acts[r].mean(0)) > 0).float().mean()) for c, r in pairs}
    return dict(zip(pairs, scores.tolist())), dict(zip(pairs, bank.directions_)), means, excess


def captums(model, concepts, randoms, inputs, seed: int) -> tuple[dict, dict]:
    """Per pair: captum's score and its CAV (unit vector towards the concept)."""
    from captum.concept import TCAV, Concept

    named = {name: Concept(i, name, [x]) for i, (name, x) in enumerate({**concepts, **randoms}.items())}
    pairs = list(itertools.product(concepts, randoms))
    torch.manual_seed(seed)  # captum's train/test split and SGD draw from the global generators
    with tempfile.TemporaryDirectory() as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tcav = TCAV(model, [LAYER], save_path=cache)
        result = tcav.interpret(inputs, [[named[c], named[r]] for c, r in pairs], target=1)
    scores = {(c, r): float(result[f"{named[c].id}-{named[r].id}"][LAYER]["sign_count"][0]) for c, r in pairs}
    cavs = {}
    for c, r in pairs:
        weights = tcav.cavs[f"{named[c].id}-{named[r].id}"][LAYER].stats["weights"][0].float()
        cavs[(c, r)] = weights / weights.norm()
    return scores, cavs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captum-runs", type=int, default=5)
    parser.add_argument("--per-set", type=int, default=40)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    model = train_cnn(g)
    n = args.per_set
    concepts = {"real: stripes": images(n, g, stripes=True), "irrelevant: red tint": images(n, g, tint=True),
                "random: noise": images(n, g)}
    randoms = {f"random{r}": images(n, g) for r in range(5)}
    inputs = images(60, g, stripes=True, tint=False)
    mine, exact, means, excess = ours(model, concepts, randoms, inputs)
    runs = [captums(model, concepts, randoms, inputs, seed) for seed in range(args.captum_runs)]
    theirs, their_cavs = [scores for scores, _ in runs], [cavs for _, cavs in runs]
    print(f"\nTCAV for class 1 at {LAYER}, scores averaged over the 5 random sets; differences are mean |score "
          f"difference| per pair ({args.captum_runs} captum runs with other seeds)\n")
    print("| concept | conceptlab | captum | conceptlab vs captum | captum vs captum | mean-difference direction | "
          "cosine of captum's CAV with the exact one | SGD objective / optimum |")
    print("|---|---|---|---|---|---|---|---|")
    for concept in concepts:
        pairs = [(concept, r) for r in randoms]
        versus = statistics.fmean(abs(mine[p] - run[p]) for p in pairs for run in theirs)
        itself = statistics.fmean(abs(a[p] - b[p]) for p in pairs for a, b in itertools.combinations(theirs, 2))
        cosine = statistics.fmean(float(cavs[p] @ exact[p]) for p in pairs for cavs in their_cavs)
        print(f"| {concept} | {statistics.fmean(mine[p] for p in pairs):.3f} | "
              f"{statistics.fmean(run[p] for p in pairs for run in theirs):.3f} | {versus:.3f} | {itself:.3f} | "
              f"{statistics.fmean(means[p] for p in pairs):.3f} | {cosine:.2f} | {statistics.fmean(excess[p] for p in pairs):.0f}x |")


if __name__ == "__main__":
    main()
