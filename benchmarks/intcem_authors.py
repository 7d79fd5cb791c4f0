"""IntCEM, conceptlab against the authors' implementation, on the same XOR / Trig / Dot data.

    python -m venv --system-site-packages /tmp/authors && /tmp/authors/bin/pip install "pytorch-lightning<2" "setuptools<70"
    git clone https://github.com/mateoespinosa/cem /tmp/cem      # the authors' code (only cem/ is imported)
    /tmp/authors/bin/python benchmarks/intcem_authors.py --authors /tmp/cem [--seeds 3] [--out results/intcem-authors]

For every dataset and seed both models are trained on the same splits with the same architecture
(the MLP encoder of the bench configs, m = 128, linear head, policy MLP 256-128 with batch norm),
the same optimiser settings (Adam, lr 0.01, weight decay 4e-5, batch 256, up to 500 epochs,
patience 15) and IntCEM's defaults (lambda_roll 5, task discount 1.1, horizon 2 -> 6 at x1.005
per step, RandInt 0.25). The authors' synthetic configs hold no IntCEM run, so these are their
CEM synthetic settings with IntCEM's defaults. Each library trains with its own loop: the
authors' model is its own LightningModule, validated every 30 epochs as in their synthetic
configs (``--authors-val-every``; with patience 15 it then runs the full 500 epochs: its
validation loss is its concept loss only, which stops improving long before the task does, so
validating every epoch stopped it at 90% on XOR) and keeps its last weights; conceptlab's
early-stops on concept + task loss and keeps its best weights. Both are then evaluated by the same code: conceptlab's intervention curves (random,
uncertainty and each model's learned policy, groups = single concepts here) on the test split,
the authors' model wrapped as a conceptlab ``ConceptModel``. One thread each, one after the other.

Writes ``intcem_authors.json`` (every run) and ``intcem_authors.md`` (mean ± std and the
differences) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import torch
from einops import rearrange
from torch import Tensor, nn

from conceptlab.atomic import write_atomic
from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import load_dataset
from conceptlab.interventions import intervention_curve
from conceptlab.metrics import evaluate
from conceptlab.models import ConceptModel, ConceptOutput, Intervention, mlp
from conceptlab.training import fit, seeded

POLICIES = ("random", "uncertainty", "learned")


class AuthorsIntCEM(ConceptModel):
    """The authors' trained ``IntAwareConceptEmbeddingModel`` read through conceptlab's interface:
    their encoder, context and probability generators, head and rank model, unchanged."""

    def __init__(self, authors_model: nn.Module, n_classes: int):
        super().__init__()
        self.inner = authors_model
        self.n_concepts, self.n_classes = authors_model.n_concepts, n_classes
        self.head = authors_model.c2y_model
        self.register_buffer("units", torch.eye(self.n_concepts, dtype=torch.bool))

    def encode(self, x: Tensor) -> Tensor:
        latent = self.inner.pre_concept_model(x)
        return torch.stack([generator(latent) for generator in self.inner.concept_context_generators], dim=1)

    def _probs(self, context: Tensor) -> Tensor:
        logits = [gen(context[:, i]) for i, gen in enumerate(self.inner.concept_prob_generators)]
        return torch.sigmoid(torch.cat(logits, dim=-1))

    def _embeddings(self, context: Tensor, mix: Tensor) -> Tensor:
        m = self.inner.emb_size
        return mix.unsqueeze(-1) * context[..., :m] + (1 - mix.unsqueeze(-1)) * context[..., m:]

    def decode(self, context: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        probs = self._probs(context)
        mix = probs if intervention is None else torch.where(intervention.mask, intervention.values.to(probs.dtype), probs)
        embeddings = self._embeddings(context, mix)
        bottleneck = rearrange(embeddings, "b k m -> b (k m)")
        return ConceptOutput(self.head(bottleneck), bottleneck, torch.logit(probs, eps=1e-6), probs, embeddings)

    def unit_scores(self, context: Tensor, intervention: Intervention | None = None) -> Tensor:
        probs = self._probs(context)
        mask = intervention.mask.to(probs.dtype) if intervention is not None else torch.zeros_like(probs)
        mix = probs if intervention is None else torch.where(intervention.mask, intervention.values.to(probs.dtype), probs)
        flat = rearrange(self._embeddings(context, mix), "b k m -> b (k m)")
        return self.inner.concept_rank_model(torch.cat([flat, mask], dim=-1))


class _PlateauWithoutVerbose(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch >= 2.7 dropped ReduceLROnPlateau's ``verbose`` argument, which the authors' code passes."""

    def __init__(self, *args, verbose=None, **kwargs):
        super().__init__(*args, **kwargs)


def train_authors(splits, spec, seed: int, val_every: int = 30) -> tuple[ConceptModel, float, int]:
    import pytorch_lightning as pl
    from cem.models.intcbm import IntAwareConceptEmbeddingModel
    from pytorch_lightning.callbacks.early_stopping import EarlyStopping

    torch.optim.lr_scheduler.ReduceLROnPlateau = _PlateauWithoutVerbose  # only a removed logging flag differs
    info, train, settings = splits.info, spec.train, spec.train.intcem
    binary = info.n_classes == 2
    in_features = splits.train.x.shape[1]

    def loader(part, shuffle: bool):
        y = part.y.float() if binary else part.y.long()
        data = torch.utils.data.TensorDataset(part.x, y, part.c.float())
        return torch.utils.data.DataLoader(data, batch_size=train.batch_size, shuffle=shuffle)

    pl.seed_everything(seed, workers=True)
    model = IntAwareConceptEmbeddingModel(
        n_concepts=info.n_concepts, n_tasks=1 if binary else info.n_classes, emb_size=spec.model.embedding_size,
        training_intervention_prob=spec.model.randint, concept_loss_weight=train.concept_weight,
        c_extractor_arch=lambda output_dim: mlp(in_features, spec.model.latent_dim, spec.model.hidden),
        learning_rate=train.lr, weight_decay=train.weight_decay, optimizer=train.optimizer,
        intervention_task_discount=settings.task_discount, intervention_weight=settings.intervention_weight,
        intervention_discount=settings.policy_discount, int_model_layers=list(spec.model.policy_hidden),
        max_horizon=settings.max_horizon, initial_horizon=settings.initial_horizon, horizon_rate=settings.horizon_rate,
    )
    trainer = pl.Trainer(
        accelerator="cpu", devices=1, max_epochs=train.max_epochs, check_val_every_n_epoch=val_every, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[EarlyStopping(monitor="val_loss", min_delta=0.0, patience=train.early_stopping_patience, mode="min")],
    )
    start = time.perf_counter()
    trainer.fit(model, loader(splits.train, True), loader(splits.val, False))
    seconds = time.perf_counter() - start
    adapter = AuthorsIntCEM(model, info.n_classes).eval()
    with torch.no_grad():  # the adapter must predict exactly what the authors' own forward pass does
        x = splits.test.x[:512]
        if not torch.allclose(adapter(x).task_logits, model(x)[2].reshape(len(x), -1), atol=1e-5):
            raise RuntimeError("the adapter disagrees with the authors' forward pass; their model has changed")
    return adapter, seconds, trainer.current_epoch


def train_ours(splits, spec, seed: int) -> tuple[ConceptModel, float, int]:
    key = MODEL_KEYS["intcem"]
    with seeded(seed):
        model = key.build(splits.train.x.shape[1], splits.info, spec.model)
    report = fit(model, splits, key.recipe, key.train_config(replace(spec.train, seed=seed, device="cpu"), spec.model))
    return model.eval(), report.seconds, report.epochs


def measure(model: ConceptModel, test, seed: int) -> dict:
    result = {"task_accuracy": 100 * evaluate(model, test)["task_accuracy"]}
    for policy in POLICIES:
        curve = intervention_curve(model, test, policy, groups=True, repeats=5, seed=seed)
        result[f"auc_{policy}"] = 100 * curve.auc
        result[f"curve_{policy}"] = [100 * a for a in curve.accuracy_mean]
    return result


def summary(runs: list[dict]) -> str:
    metrics = ["task_accuracy"] + [f"auc_{p}" for p in POLICIES] + ["train_seconds", "epochs"]
    lines = ["| dataset | metric | conceptlab | authors | difference (ours - theirs) |", "|---|---|---|---|---|"]
    for dataset in dict.fromkeys(r["dataset"] for r in runs):
        for metric in metrics:
            values = {lib: [r[metric] for r in runs if r["dataset"] == dataset and r["library"] == lib]
                      for lib in ("conceptlab", "authors")}
            if not all(values.values()):
                continue

            def cell(xs: list[float]) -> str:
                return f"{statistics.fmean(xs):.2f} ± {statistics.pstdev(xs):.2f}"

            gap = statistics.fmean(values["conceptlab"]) - statistics.fmean(values["authors"])
            lines.append(f"| {dataset} | {metric} | {cell(values['conceptlab'])} | {cell(values['authors'])} | {gap:+.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a checkout of github.com/mateoespinosa/cem")
    parser.add_argument("--datasets", default="xor,trig,dot")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default="results/intcem-authors")
    parser.add_argument("--max-epochs", type=int, help="override the configs' epoch limit (a smoke run)")
    parser.add_argument("--authors-val-every", type=int, default=30, help="epochs between the authors' validations")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.authors).resolve()))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    out = Path(args.out)
    path = out / "intcem_authors.json"
    runs = json.loads(path.read_text()) if path.exists() else []  # resumes: finished runs are kept
    done = {(r["dataset"], r["seed"], r["library"]) for r in runs}
    for dataset in args.datasets.split(","):
        spec = load_spec(dataset)
        if args.max_epochs:
            spec = replace(spec, train=replace(spec.train, max_epochs=args.max_epochs))
        for seed in range(args.seeds):
            splits = load_dataset(spec.dataset, seed=seed)
            authors = partial(train_authors, val_every=args.authors_val_every)
            for library, train in (("conceptlab", train_ours), ("authors", authors)):
                if (dataset, seed, library) in done:
                    continue
                model, seconds, epochs = train(splits, spec, seed)
                run = {"dataset": dataset, "seed": seed, "library": library, "train_seconds": seconds, "epochs": epochs,
                       **measure(model, splits.test, seed)}
                runs.append(run)
                write_atomic(path, json.dumps(runs, indent=1))
                print(f"{dataset} seed {seed} {library:10s} acc {run['task_accuracy']:.2f} "
                      f"AUC random {run['auc_random']:.2f} learned {run['auc_learned']:.2f} "
                      f"({seconds:.1f} s, {epochs} epochs)", flush=True)
    table = summary(runs)
    write_atomic(out / "intcem_authors.md", table)
    print(table)


if __name__ == "__main__":
    main()
