"""SCBM side by side: conceptlab against the authors' implementation, same data, same seed, same protocol.

    git clone https://github.com/mvandenhi/SCBM /tmp/scbm          # the authors' code (models/, utils/ are imported)
    python -m venv --system-site-packages /tmp/scbm-env
    /tmp/scbm-env/bin/pip install wandb pytorch-minimize seaborn plotly   # what their modules import
    /tmp/scbm-env/bin/python benchmarks/scbm_authors.py --authors /tmp/scbm [--datasets xor trig dot] [--seeds 2] [--epochs 60]

Protocol, the same for both: conceptlab's XOR / Trig / Dot splits for the seed (3,000 samples,
70/10/20); the encoder ``conceptlab.models.mlp(d, 256, (128, 128))`` in both (the authors' synthetic
encoder, FCNN, adds batch norm and dropout; theirs is replaced so the encoders are equal); an
amortized covariance; M = 100 samples; their ``nonlinear`` head (256 ReLU units: XOR of hard
concepts needs it); L1 precision weight 1 and concept weight 1 (their defaults); the temperature
annealed from 1 to 0.5 over the run; Adam, lr 1e-3, no weight decay, batch 256, exactly
``--epochs`` epochs, no early stopping, no learning-rate schedule, the last weights kept; one
thread, the two libraries one after the other for every (dataset, seed).

Evaluation, the same code for both: task and concept accuracy on the test split, and the
random-intervention curve over single concepts with the same per-sample random orders (the
authors' ``simple_perc`` strategy in both: corrected logits at logit 0.05 / 0.95, the rest from the
Gaussian conditional). Theirs runs their ``SCBM_Strategy.compute_intervention`` and
``SCBM.intervene``; ours, ``predict`` with an ``Intervention``.

What still differs: their evaluation draws fresh Bernoulli samples on every call (seeded here),
ours reads fixed draws; their concept loss omits the constant log M; their training loop here is
this script's minimal loop around their model and loss (their own also logs to wandb and
validates). Writes ``scbm_authors.json`` (every run) and ``scbm_authors.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from conceptlab.datasets import load_dataset
from conceptlab.metrics import concept_accuracy, task_accuracy
from conceptlab.models import Intervention, mlp, predict, scbm
from conceptlab.training import TrainConfig, fit, seeded

LATENT, HIDDEN, HEAD, SAMPLES, LR, BATCH = 256, (128, 128), 256, 100, 1e-3, 256


def authors_config(d: int, k: int, epochs: int) -> SimpleNamespace:
    model = SimpleNamespace(encoder_arch="FCNN", head_arch="nonlinear", training_mode="joint", concept_learning="hard",
                            num_monte_carlo=SAMPLES, straight_through=True, j_epochs=epochs, t_epochs=epochs,
                            cov_type="amortized", model_directory="", alpha=1.0, reg_precision="l1", reg_weight=1.0,
                            model="scbm", level=0.99)
    return SimpleNamespace(model=model, data=SimpleNamespace(num_concepts=k, num_classes=2, num_covariates=d))


def train_authors(splits, epochs: int, seed: int):
    from models.losses import SCBLoss
    from models.models import SCBM

    d, k = splits.train.x.shape[1], splits.info.n_concepts
    config = authors_config(d, k, epochs)
    with seeded(seed):
        model = SCBM(config)
        model.encoder = mlp(d, LATENT, HIDDEN)
    loss_fn = SCBLoss(num_classes=2, alpha=1.0, config=config.model)
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    x, c, y = splits.train.x, splits.train.c, splits.train.y
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    with seeded(seed):
        for epoch in range(epochs):
            model.train()
            for rows in torch.randperm(len(x), generator=generator).split(BATCH):
                probs, factor, logits = model(x[rows], epoch)
                *_, total = loss_fn(probs, c[rows], logits, y[rows], factor)
                optimizer.zero_grad()
                total.backward()
                optimizer.step()
    return model, (time.perf_counter() - start) / epochs, config


def authors_predictions(model, config, test, orders: torch.Tensor, seed: int) -> tuple[torch.Tensor, list[float]]:
    """Their concept probabilities and their random-intervention curve (their strategy and head)."""
    from utils.intervention import SCBM_Strategy

    strategy = SCBM_Strategy("simple_perc", None, model, "cpu", config)
    model.eval()
    curve = []
    with torch.no_grad(), seeded(seed):
        probs, mean, factor, logits = model(test.x, 0, validation=True, return_full=True)
        covariance = (factor @ factor.transpose(1, 2)).double()
        for n in range(orders.shape[1] + 1):
            mask = (orders < n).long()  # their masks are integer tensors (they index with its sum)
            *_, sample_probs, sample_logits = strategy.compute_intervention(mean.double(), covariance, test.c, mask)
            curve.append(task_accuracy(model.intervene(sample_probs.float(), sample_logits.float()), test.y))
    return probs.mean(-1), curve


def train_ours(splits, epochs: int, seed: int):
    d, k = splits.train.x.shape[1], splits.info.n_concepts
    with seeded(seed):
        model = scbm(in_features=d, n_concepts=k, n_classes=2, latent_dim=LATENT, hidden=HIDDEN, head_hidden=(HEAD,),
                     samples=SAMPLES)
    config = TrainConfig(max_epochs=epochs, lr=LR, weight_decay=0.0, batch_size=BATCH, early_stopping_patience=0,
                         lr_patience=10 * epochs, keep="last", device="cpu", seed=seed)
    report = fit(model, splits, "joint", config=config)
    return model, report.seconds / epochs


def our_predictions(model, test, orders: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    curve = [task_accuracy(predict(model, test.x, Intervention(orders < n, test.c)).task_logits, test.y)
             for n in range(orders.shape[1] + 1)]
    return predict(model, test.x).concept_probs, curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=Path, required=True, help="a checkout of mvandenhi/SCBM")
    parser.add_argument("--datasets", nargs="+", default=["xor", "trig", "dot"])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("results/scbm-authors"))
    args = parser.parse_args()
    sys.path.insert(0, str(args.authors.resolve()))
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "scbm_authors.json"
    runs = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["seed"], r["library"]) for r in runs}
    for name in args.datasets:
        for seed in range(args.seeds):
            splits = load_dataset({"name": name}, seed=seed)
            test = splits.test
            orders = torch.rand(len(test), splits.info.n_concepts, generator=torch.Generator().manual_seed(seed)).argsort(1).argsort(1)
            for library in ("conceptlab", "authors"):
                if (name, seed, library) in done:
                    continue
                if library == "conceptlab":
                    model, per_epoch = train_ours(splits, args.epochs, seed)
                    probs, curve = our_predictions(model, test, orders)
                else:
                    model, per_epoch, config = train_authors(splits, args.epochs, seed)
                    probs, curve = authors_predictions(model, config, test, orders, seed)
                runs.append({"dataset": name, "seed": seed, "library": library, "task_accuracy": curve[0],
                             "concept_accuracy": concept_accuracy(probs, test.c), "curve": curve, "seconds_per_epoch": per_epoch})
                path.write_text(json.dumps(runs, indent=1))
                print(name, seed, library, f"task {curve[0]:.4f}", f"concepts {runs[-1]['concept_accuracy']:.4f}",
                      "curve", [round(v, 4) for v in curve], f"{per_epoch:.2f} s/epoch", flush=True)
    (args.out / "scbm_authors.md").write_text(table(runs, args))
    print(table(runs, args))


def table(runs: list[dict], args: argparse.Namespace) -> str:
    def cell(values: list[float]) -> str:
        return f"{100 * statistics.fmean(values):.2f} ± {100 * (statistics.stdev(values) if len(values) > 1 else 0):.2f}"

    lines = [f"SCBM, {args.epochs} epochs, seeds 0-{args.seeds - 1}, test split (%, mean ± std over seeds)", "",
             "| dataset | library | task accuracy | concept accuracy | 1 concept corrected | all corrected | s / epoch |",
             "|---|---|---|---|---|---|---|"]
    for name in args.datasets:
        for library in ("conceptlab", "authors"):
            rows = [r for r in runs if r["dataset"] == name and r["library"] == library]
            if rows:
                lines.append(f"| {name} | {library} | {cell([r['task_accuracy'] for r in rows])} | "
                             f"{cell([r['concept_accuracy'] for r in rows])} | {cell([r['curve'][1] for r in rows])} | "
                             f"{cell([r['curve'][-1] for r in rows])} | "
                             f"{statistics.fmean(r['seconds_per_epoch'] for r in rows):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
