"""DCR side by side: conceptlab's Deep Concept Reasoner against the authors' package, same data, seed and protocol.

    python -m venv --system-site-packages /tmp/te-env && /tmp/te-env/bin/pip install torch-explain==1.5.1
    /tmp/te-env/bin/python benchmarks/dcr_authors.py [--datasets xor trig dot] [--seeds 3] [--epochs 100]

The authors' package (torch-explain, its ``ConceptEmbedding`` and ``ConceptReasoningLayer`` with
Goedel logic and temperature 100) and conceptlab's ``dcr`` train on conceptlab's XOR / Trig / Dot
splits for the seed with the same encoder (``conceptlab.models.mlp(d, 128, (128, 128))`` then
LeakyReLU, as the CEM encoder), embedding size 16, RandInt 0.25 (theirs draws one mask per batch,
the only scheme their layer has; conceptlab draws one per sample, as the CEM paper), concept and
task weight 1, Adam lr 0.01, batch 256, exactly ``--epochs`` epochs, no early stopping, the last
weights. Differences that remain: their package predicts one rule per class (two for a binary
task, trained with binary cross-entropy on one-hot labels, accuracy by the larger rule), conceptlab
one rule for class 1 of a binary task (its logit, binary cross-entropy); their concept
embedding layer has one context generator per concept (conceptlab: one batched product, the same
function); their RandInt writes 0 / 1 like conceptlab's.

Reported on the test split: task and concept accuracy, accuracy with every concept corrected,
and the most frequent rules of the positive class (their ``explain(..., "global")``, conceptlab's
``class_rules``). Writes ``dcr_authors.json`` and ``dcr_authors.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F

from conceptlab.datasets import load_dataset
from conceptlab.metrics import concept_accuracy, task_accuracy
from conceptlab.models import Intervention, class_rules, dcr, mlp, predict
from conceptlab.training import TrainConfig, fit, seeded

LATENT, HIDDEN, EMBEDDING, LR, BATCH, RANDINT = 128, (128, 128), 16, 0.01, 256, 0.25


def train_authors(splits, epochs: int, seed: int):
    from torch_explain.nn.concepts import ConceptEmbedding, ConceptReasoningLayer
    from torch_explain.nn.semantics import GodelTNorm

    d, k = splits.train.x.shape[1], splits.info.n_concepts
    with seeded(seed):
        encoder = torch.nn.Sequential(mlp(d, LATENT, HIDDEN), torch.nn.LeakyReLU())
        embedder = ConceptEmbedding(LATENT, k, EMBEDDING, training_intervention_prob=RANDINT)
        reasoner = ConceptReasoningLayer(EMBEDDING, 2, GodelTNorm(), 100.0)
    parameters = [*encoder.parameters(), *embedder.parameters(), *reasoner.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=LR)
    x, c, y = splits.train.x, splits.train.c, F.one_hot(splits.train.y, 2).float()
    generator = torch.Generator().manual_seed(seed)
    with seeded(seed):
        for _ in range(epochs):
            for rows in torch.randperm(len(x), generator=generator).split(BATCH):
                embeddings, probs = embedder(encoder(x[rows]), None, c[rows], train=True)
                loss = F.binary_cross_entropy(probs, c[rows]) + F.binary_cross_entropy(reasoner(embeddings, probs), y[rows])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    return encoder, embedder, reasoner


def evaluate_authors(parts, test, names) -> dict:
    encoder, embedder, reasoner = parts
    with torch.no_grad():
        latent = encoder(test.x)
        embeddings, probs = embedder(latent, None, test.c, train=False)
        predicted = reasoner(embeddings, probs).argmax(1)
        corrected_embeddings, _ = embedder(latent, list(range(test.c.shape[1])), test.c, train=False)
        everything = reasoner(corrected_embeddings, test.c).argmax(1)  # their layer returns the uncorrected probabilities
        explained = reasoner.explain(embeddings, probs, "global", concept_names=list(names.concept_names),
                                     class_names=list(names.task_names))
    positive = sorted((e for e in explained if e["class"] == names.task_names[1]), key=lambda e: -e["count"])
    return {"task_accuracy": float((predicted == test.y).float().mean()), "concept_accuracy": concept_accuracy(probs, test.c),
            "all_corrected": float((everything == test.y).float().mean()),
            "rules": [[e["explanation"], e["count"]] for e in positive[:3]]}


def train_ours(splits, epochs: int, seed: int):
    d, k = splits.train.x.shape[1], splits.info.n_concepts
    with seeded(seed):
        model = dcr(in_features=d, n_concepts=k, n_classes=2, embedding_size=EMBEDDING, latent_dim=LATENT, hidden=HIDDEN)
    fit(model, splits, "joint", config=TrainConfig(max_epochs=epochs, lr=LR, batch_size=BATCH, weight_decay=0.0,
                                                   early_stopping_patience=0, lr_patience=10 * epochs, keep="last",
                                                   intervention_prob=RANDINT, device="cpu", seed=seed))
    return model.eval()


def evaluate_ours(model, test) -> dict:
    out = predict(model, test.x)
    rules = class_rules(model, test.x, test.info)[test.info.task_names[1]]
    return {"task_accuracy": task_accuracy(out.task_logits, test.y), "concept_accuracy": concept_accuracy(out.concept_probs, test.c),
            "all_corrected": task_accuracy(predict(model, test.x, Intervention.all(test.c)).task_logits, test.y),
            "rules": [[rule, count] for rule, count in rules]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["xor", "trig", "dot"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("results/dcr-authors"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "dcr_authors.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["seed"], r["library"]) for r in runs}
    for name in args.datasets:
        for seed in range(args.seeds):
            splits = load_dataset({"name": name}, seed=seed)
            for library in ("conceptlab", "authors"):
                if (name, seed, library) in done:
                    continue
                result = (evaluate_ours(train_ours(splits, args.epochs, seed), splits.test) if library == "conceptlab"
                          else evaluate_authors(train_authors(splits, args.epochs, seed), splits.test, splits.info))
                runs.append({"dataset": name, "seed": seed, "library": library, **result})
                path.write_text(json.dumps(runs, indent=1))
                print(name, seed, library, {k: v for k, v in result.items()}, flush=True)
    (args.out / "dcr_authors.md").write_text(table(runs, args))
    print(table(runs, args))


def table(runs: list[dict], args: argparse.Namespace) -> str:
    def cell(values: list[float]) -> str:
        return f"{100 * statistics.fmean(values):.2f} ± {100 * (statistics.stdev(values) if len(values) > 1 else 0):.2f}"

    lines = [f"DCR, {args.epochs} epochs, seeds 0-{args.seeds - 1}, test split (%, mean ± std over seeds)", "",
             "| dataset | library | task accuracy | concept accuracy | all corrected | most frequent positive rules (seeds) |",
             "|---|---|---|---|---|---|"]
    for name in args.datasets:
        for library in ("conceptlab", "authors"):
            rows = [r for r in runs if r["dataset"] == name and r["library"] == library]
            if rows:
                tops = statistics.multimode([rule for r in rows for rule, _ in r["rules"][:2]]) if any(r["rules"] for r in rows) else []
                lines.append(f"| {name} | {library} | {cell([r['task_accuracy'] for r in rows])} | "
                             f"{cell([r['concept_accuracy'] for r in rows])} | {cell([r['all_corrected'] for r in rows])} | "
                             f"{'; '.join(tops[:2])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
