"""A planted spurious concept, found in a PCBM's weights and pruned (Yuksekgonul et al., ICLR 2023, Sec. 5).

Per scenario (visual edit S, class A drawn at random): 80% of class A's training (and validation)
images carry S (``--rate``), no other image does. A PCBM, a PCBM-h and a linear probe are trained on these
features; the concept bank knows Koh's 112 CUB attributes plus the visual edits (CAVs from
edited against unedited training images). The test set breaks the correlation: S is applied
to a random quarter of the test images (``--test-fraction``), whatever their class. We report where S ranks among class
A's weights, then prune S from class A's row of the head (``apply_edits``) by each method
(``fold-mean``, conceptlab's; ``prune`` and ``prune-normalize``, the paper's Prune and
Prune+Normalize) and measure accuracy on that test set before and after, against models trained
without the edit (the reference).
Recovered = (after - before) / (reference - before).

PCBM-h is the case where the edit is expected to fall short: its residual reads the embedding
directly and can keep the shortcut that pruning the concept removes from the head. The linear
probe has no concept to prune: it shows what is lost without the edit.

    python benchmarks/pcbm_spurious.py --root ../shared/data/cub100 [--edits border dots red_tint vignette]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from conceptlab.atomic import write_atomic
from conceptlab.concepts import concept_bank, label_sets
from conceptlab.datasets import ConceptDataset, ConceptInfo
from conceptlab.datasets.base import ConceptSplits
from conceptlab.datasets.cub import load_cub
from conceptlab.datasets.registry import CubSettings, features_by_path, image_features
from conceptlab.models import ConceptEdit, apply_edits, class_weights, linear_probe, pcbm, predict
from conceptlab.models.editing import EDIT_METHODS
from conceptlab.runtime import seeded
from conceptlab.training import PosthocConfig, TrainConfig, fit

TRAIN = TrainConfig(batch_size=64, max_epochs=200, lr=1e-3, weight_decay=1e-4, early_stopping_patience=15, device="cpu",
                    posthoc=PosthocConfig(lam=1e-4))  # pcbm-cub100.yaml's settings


def accuracy(model, x: torch.Tensor, y: torch.Tensor) -> float:
    logits = predict(model, x).task_logits
    return 100 * float((logits.argmax(1) == y).float().mean())


def train_models(splits: ConceptSplits, bank, seed: int) -> dict:
    models = {}
    for name, hybrid in (("pcbm", False), ("pcbm-h", True)):
        models[name] = pcbm(in_features=splits.train.x.shape[1], n_concepts=splits.info.n_concepts, n_classes=splits.info.n_classes,
                             hybrid=hybrid, bank=bank)
        fit(models[name], splits, "posthoc", config=TRAIN)
    with seeded(seed):
        models["linear-probe"] = linear_probe(in_features=splits.train.x.shape[1], n_classes=splits.info.n_classes)
    fit(models["linear-probe"], splits, "joint", config=TRAIN)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="directory holding CUB_200_2011/")
    parser.add_argument("--edits", nargs="+", default=["border", "dots", "red_tint", "vignette"])
    parser.add_argument("--rate", type=float, default=0.8, help="share of class A's training images that carry the edit")
    parser.add_argument("--test-fraction", type=float, default=0.25, help="share of test images edited, any class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="results/pcbm-spurious")
    args = parser.parse_args()
    torch.set_num_threads(2)
    start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    splits = load_cub(args.root, seed=args.seed, concepts="class-level")
    options = CubSettings(root=args.root)  # bundled EfficientNet-Lite0 at 224 px, the default feature cache
    base = features_by_path(splits, options)
    x = {part: torch.stack([base[p] for p in getattr(splits, part).paths]) for part in ("train", "val", "test")}
    paths = {part: getattr(splits, part).paths for part in ("train", "val", "test")}
    attributes = list(splits.info.concept_names)
    info = ConceptInfo(attributes + list(args.edits), list(splits.info.task_names))

    sets = label_sets(x["train"], splits.train.c, attributes, seed=args.seed)
    for edit in args.edits:
        rows = rng.choice(len(paths["train"]), 400, replace=False)
        sets[edit] = (image_features([paths["train"][i] for i in rows[:200]], info, options, edit), x["train"][rows[200:]])
    bank = concept_bank(sets, seed=args.seed)
    print(f"bank: {len(attributes)} attributes + {len(args.edits)} edits; held-out CAV accuracy of the edits: "
          + ", ".join(f"{e} {float(a):.2f}" for e, a in zip(args.edits, bank.accuracy_[len(attributes):])))

    def dataset(part: str, features: torch.Tensor, edited_rows: torch.Tensor | None, edit: str | None) -> ConceptDataset:
        c = torch.zeros(len(features), info.n_concepts)
        c[:, : len(attributes)] = getattr(splits, part).c
        if edited_rows is not None:
            c[edited_rows, info.concept_names.index(edit)] = 1
        return ConceptDataset(features, c, getattr(splits, part).y, info)

    clean = ConceptSplits(*(dataset(p, x[p], None, None) for p in ("train", "val", "test")))
    reference = train_models(clean, bank, args.seed)
    test_y = splits.test.y
    half = torch.as_tensor(np.sort(rng.choice(len(test_y), int(args.test_fraction * len(test_y)), replace=False)))
    classes = rng.choice(info.n_classes, len(args.edits), replace=False)
    rows = []
    for edit, target in zip(args.edits, classes.tolist()):
        name = info.task_names[target]
        parts = {}
        for part in ("train", "val"):
            in_class = (getattr(splits, part).y == target).nonzero()[:, 0]
            in_class = in_class[torch.as_tensor(rng.random(len(in_class)) < args.rate)]
            features = x[part].clone()
            features[in_class] = image_features([paths[part][i] for i in in_class.tolist()], info, options, edit)
            parts[part] = dataset(part, features, in_class, edit)
        shifted = x["test"].clone()
        shifted[half] = image_features([paths["test"][i] for i in half.tolist()], info, options, edit)
        spurious = train_models(ConceptSplits(parts["train"], parts["val"], clean.test), bank, args.seed)
        column = info.concept_names.index(edit)
        for model_name, model in spurious.items():
            row = {"edit": edit, "class": name, "model": model_name,
                   "reference": accuracy(reference[model_name], shifted, test_y),
                   "before": accuracy(model, shifted, test_y),
                   "before_clean_test": accuracy(model, x["test"], test_y)}
            if model_name != "linear-probe":
                weights = class_weights(model)[target]
                row["rank_of_edit"] = int((weights > weights[column]).sum()) + 1
                row["weight_of_edit"] = float(weights[column])
                row["nonzero_weights_of_class"] = int((weights != 0).sum())
                lost = row["reference"] - row["before"]
                for method in EDIT_METHODS:  # fold-mean (conceptlab), prune and prune-normalize (the paper)
                    pruned = apply_edits(model, info, [ConceptEdit((edit,), 0.0, (name,), method=method)])
                    row[f"after_{method}"] = accuracy(pruned, shifted, test_y)
                    row[f"after_clean_test_{method}"] = accuracy(pruned, x["test"], test_y)
                    row[f"recovered_{method}"] = (row[f"after_{method}"] - row["before"]) / lost if lost > 0 else None
            rows.append(row)
            print(json.dumps(row))
    out = Path(args.out)
    write_atomic(out / "spurious.json", json.dumps({"rows": rows, "seconds": round(time.perf_counter() - start, 1),
                                                    "test_edited": len(half), "test_images": len(test_y),
                                                    "rate": args.rate}, indent=1))
    write_atomic(out / "spurious.md", table(rows))
    print(table(rows))
    print(f"{time.perf_counter() - start:.0f} s; results in {out}/spurious.json and spurious.md")


def table(rows: list[dict]) -> str:
    methods = " | ".join(f"after {m} (recovered)" for m in EDIT_METHODS)
    lines = [f"| edit -> class | model | rank of edit in class weights | reference | before edit | {methods} | clean test before / "
             + " / ".join(EDIT_METHODS) + " |", "|---|---|---|---|---|" + "---|" * len(EDIT_METHODS) + "---|"]
    for r in rows:
        rank = f"{r['rank_of_edit']} of {r['nonzero_weights_of_class']} non-zero" if "rank_of_edit" in r else "n/a"
        cells, clean = [], [f"{r['before_clean_test']:.2f}"]
        for method in EDIT_METHODS:
            if f"after_{method}" not in r:
                cells.append("n/a (no concept to prune)")
                continue
            recovered = r[f"recovered_{method}"]
            cells.append(f"{r[f'after_{method}']:.2f} ({f'{100 * recovered:.0f}%' if recovered is not None else 'n/a'})")
            clean.append(f"{r[f'after_clean_test_{method}']:.2f}")
        lines.append(f"| {r['edit']} -> {r['class']} | {r['model']} | {rank} | {r['reference']:.2f} | {r['before']:.2f} | "
                     + " | ".join(cells) + f" | {' / '.join(clean)} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
