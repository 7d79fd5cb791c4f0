"""Label-free CBM side by side: conceptlab against the authors' functions, same embeddings, same seed.

    mkdir -p /tmp/lfcbm/glm_saga && cd /work/.mirror/Trustworthy-ML-Lab+Label-free-CBM/repo   # fetched, fa2869d
    for f in similarity.py glm_saga/__init__.py glm_saga/elasticnet.py; do git show HEAD:$f > /tmp/lfcbm/$f; done
    python -m venv --system-site-packages /tmp/lfcbm-env          # their code needs torch, numpy, tqdm only
    /tmp/lfcbm-env/bin/python benchmarks/lfcbm_authors.py --authors /tmp/lfcbm [--seeds 3] [--size 3000]

Data: ``conceptlab.datasets.planted_embeddings`` (six planted binary concepts, four decoy candidates,
four classes; backbone embeddings of width 32, image-text embeddings of width 13), seeds 0..n-1.

Both sides get the candidates left after conceptlab's text filters (the authors run theirs in a
notebook with CLIP and a sentence model, which cannot run offline, so that step is conceptlab's in
both). From there the authors' side is this script's driver around their own functions, in the
order of their ``train_cbm.py``: the top-5 activation cutoff (0.25), the projection learned with
their ``cos_similarity_cubed_single`` (Adam 1e-3, 1000 steps, batches of up to 50,000 images, the
validation similarity every 50 steps, stopping at the first check that does not improve), the
interpretability cutoff (0.45), standardisation, and their ``glm_saga`` (step 0.1, 1000 epochs,
alpha 0.99, lam 0.0007 as their ``max_reg``, batch 256). conceptlab runs ``fit_label_free`` with its
defaults (the same settings; its head is solved to a tolerance by proximal gradient instead of SAGA).

Evaluation, the same code for both: the authors' weights are loaded into a ``LabelFreeCBM``; task
accuracy, each kept axis's accuracy against its planted concept (activation > 0), the number of
non-zero head weights, and the random-intervention curve over the kept concepts (corrected axes at
their 5th / 95th training percentile). Writes a markdown table to stdout.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from conceptlab.datasets import planted_embeddings
from conceptlab.interventions import intervention_curve
from conceptlab.models import LabelFreeCBM, predict
from conceptlab.training import LabelFreeConfig, fit_label_free
from conceptlab.training.labelfree import image_text_scores, text_filters


class Indexed(Dataset):
    """(x, y, index) items: the loader their SAGA solver reads."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        return self.x[i], self.y[i], i


def authors_fit(data, candidates: list[int], seed: int) -> tuple[LabelFreeCBM, list[str]]:
    from glm_saga.elasticnet import glm_saga
    from similarity import cos_similarity_cubed_single

    random.seed(seed)
    torch.manual_seed(seed)
    train, val = data.splits.train, data.splits.val
    text = data.text_embeddings[candidates]
    names = [data.concept_names[i] for i in candidates]
    scores, val_scores = (image_text_scores(images, text) for images in data.image_embeddings[:2])
    top = scores.topk(5, dim=0).values.mean(0)
    keep = top > 0.25
    names = [n for n, k in zip(names, keep.tolist()) if k]
    scores, val_scores = scores[:, keep], val_scores[:, keep]
    projection = torch.nn.Linear(train.x.shape[1], len(names), bias=False)
    optimizer = torch.optim.Adam(projection.parameters(), lr=1e-3)
    best, best_weight = float("inf"), None
    batch = min(50000, len(train.x))
    for step in range(1000):
        rows = torch.LongTensor(random.sample(range(len(train.x)), k=batch))
        loss = -cos_similarity_cubed_single(scores[rows], projection(train.x[rows])).mean()
        loss.backward()
        optimizer.step()
        if step % 50 == 0 or step == 999:
            with torch.no_grad():
                val_loss = -cos_similarity_cubed_single(val_scores, projection(val.x)).mean()
            if step == 0 or val_loss < best:
                best, best_weight = val_loss, projection.weight.detach().clone()
            else:
                break
        optimizer.zero_grad()
    with torch.no_grad():
        similarity = cos_similarity_cubed_single(val_scores, val.x @ best_weight.T)
    interpretable = similarity > 0.45
    names = [n for n, k in zip(names, interpretable.tolist()) if k]
    weight = best_weight[interpretable]
    raw = train.x @ weight.T
    mean, std = raw.mean(0), raw.std(0)
    standardised = (raw - mean) / std
    n_classes = int(data.splits.info.n_classes)
    linear = torch.nn.Linear(len(names), n_classes)
    linear.weight.data.zero_()
    linear.bias.data.zero_()
    val_standardised = ((val.x @ weight.T) - mean) / std
    path = glm_saga(linear, DataLoader(Indexed(standardised, train.y), batch_size=256, shuffle=True), 0.1, 1000, 0.99,
                    epsilon=1, k=1, val_loader=DataLoader(TensorDataset(val_standardised, val.y), batch_size=256),
                    do_zero=False, metadata={"max_reg": {"nongrouped": 0.0007}}, n_ex=len(train.x), n_classes=n_classes,
                    verbose=None)
    model = LabelFreeCBM(in_features=train.x.shape[1], n_concepts=len(names), n_classes=n_classes)
    with torch.no_grad():
        model.projection.weight.copy_(weight)
        model.activation_mean.copy_(mean)
        model.activation_std.copy_(std)
        model.calibrate_interventions(standardised)
        # their head has one output per class; a binary task would need the difference, these data have four classes
        model.head.weight.copy_(path["path"][0]["weight"])
        model.head.bias.copy_(path["path"][0]["bias"])
    return model, names


def evaluate(model: LabelFreeCBM, data, names: list[str], seed: int) -> dict[str, float]:
    splits = data.labelled_as(names)
    out = predict(model, splits.test.x)
    curve = intervention_curve(model, splits.test, "random", groups=False, repeats=5, seed=seed)
    return {"task": 100 * out.task_logits.argmax(1).eq(splits.test.y).float().mean().item(),
            "concept": 100 * ((out.concept_logits > 0).float() == splits.test.c).float().mean().item(),
            "nonzero": int((model.head.weight.abs() > 1e-5).sum()), "kept": len(names),
            "all_corrected": 100 * curve.accuracy_mean[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", required=True, help="folder holding their similarity.py and glm_saga/")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=3000)
    args = parser.parse_args()
    sys.path.insert(0, args.authors)
    torch.set_num_threads(1)
    rows: dict[str, list[dict[str, float]]] = {"conceptlab": [], "authors": []}
    for seed in range(args.seeds):
        data = planted_embeddings(size=args.size, seed=seed)
        removed = text_filters(data.concept_names, data.text_embeddings, data.class_text_embeddings, LabelFreeConfig())
        candidates = [i for i in range(len(data.concept_names)) if i not in removed]
        start = time.perf_counter()
        ours, report = fit_label_free(data.splits.train, data.splits.val, image_embeddings=data.image_embeddings[:2],
                                      text_embeddings=data.text_embeddings, concept_names=data.concept_names,
                                      class_text_embeddings=data.class_text_embeddings, seed=seed)
        rows["conceptlab"].append({**evaluate(ours, data, list(report.concepts), seed), "seconds": time.perf_counter() - start})
        start = time.perf_counter()
        theirs, names = authors_fit(data, candidates, seed)
        rows["authors"].append({**evaluate(theirs, data, names, seed), "seconds": time.perf_counter() - start})
        print(f"seed {seed}: conceptlab kept {list(report.concepts)}; authors kept {names}", flush=True)
        for side, values in rows.items():
            print(f"  {side}: {values[-1]}", flush=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    keys = ("task", "concept", "all_corrected", "kept", "nonzero", "seconds")
    print("\n| library | task accuracy | concept accuracy | every concept corrected | concepts kept | non-zero head weights "
          "| seconds |\n|---|---|---|---|---|---|---|")
    for side, values in rows.items():
        print(f"| {side} | " + " | ".join(cell([v[key] for v in values]) for key in keys) + " |")


if __name__ == "__main__":
    main()
