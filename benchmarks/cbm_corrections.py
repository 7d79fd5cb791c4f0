"""Why correcting a CBM's concepts can lower its accuracy on digits-add and fashion-mnist.

    python benchmarks/cbm_corrections.py [--seed 0] [--epochs 60]

Two checks behind sentences in docs/results.md, one seed each, nothing tuned:
1. A joint logit CBM (each bundled config's own settings, at most ``--epochs`` epochs) with every
   concept corrected, writing Koh et al.'s 5th / 95th percentile training logits (the default)
   and, instead, each concept's median training logit among its positives and its negatives. If
   both collapse alike, the intervention values are not the cause.
2. digits-add: a sigmoid CBM trained with the independent recipe (its linear head on the true
   digits, as binary groups), with both digits given: how much of the sum a linear head learns.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import ConceptInfo, load_dataset
from conceptlab.metrics import task_accuracy
from conceptlab.models import Intervention, predict
from conceptlab.training import fit, seeded


def corrected_accuracy(model, test) -> float:
    return task_accuracy(predict(model, test.x, Intervention.all(test.c)).task_logits, test.y)


def logit_cbm(name: str, seed: int, epochs: int) -> None:
    spec = load_spec(name)
    data = load_dataset(spec.dataset, seed=seed)
    key = MODEL_KEYS["cbm-logit"]
    with seeded(seed):
        model = key.build(data.train.x.shape[1], data.info, spec.model)
    fit(model, data, key.recipe, config=replace(spec.train, max_epochs=epochs, device="cpu"))
    none = task_accuracy(predict(model, data.test.x).task_logits, data.test.y)
    percentiles = corrected_accuracy(model, data.test)
    logits, c = predict(model, data.train.x).concept_logits, data.train.c
    model.intervention_high.copy_(torch.stack([logits[c[:, i] > 0.5, i].median() for i in range(c.shape[1])]))
    model.intervention_low.copy_(torch.stack([logits[c[:, i] < 0.5, i].median() for i in range(c.shape[1])]))
    medians = corrected_accuracy(model, data.test)
    print(f"{name} logit CBM, seed {seed}: no correction {100 * none:.1f} %; every concept corrected with the "
          f"percentiles {100 * percentiles:.1f} %, with class-conditional medians {100 * medians:.1f} %")


def independent_digits(seed: int, epochs: int) -> None:
    spec = load_spec("digits-add")
    data = load_dataset(spec.dataset, seed=seed)
    binary = ConceptInfo(data.info.concept_names, data.info.task_names, data.info.concept_groups)  # digits as binary groups
    data = type(data)(*(part.with_concepts(part.c, binary) for part in (data.train, data.val, data.test)))
    with seeded(seed):
        model = MODEL_KEYS["cbm-fuzzy"].build(data.train.x.shape[1], binary, spec.model)
    fit(model, data, "independent", config=replace(spec.train, max_epochs=epochs, device="cpu"))
    print(f"digits-add independent sigmoid CBM, seed {seed}: both digits given {100 * corrected_accuracy(model, data.test):.1f} %")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    for name in ("fashion-mnist", "digits-add"):
        logit_cbm(name, args.seed, args.epochs)
    independent_digits(args.seed, args.epochs)


if __name__ == "__main__":
    main()
