"""CEM and IntCEM side by side: conceptlab against the authors' implementation, same data, same seed, two protocols.

    python -m venv --system-site-packages /tmp/authors && /tmp/authors/bin/pip install "pytorch-lightning<2" "setuptools<70"
    git clone https://github.com/mateoespinosa/cem /tmp/cem      # the authors' code (only cem/ is imported)
    /tmp/authors/bin/python benchmarks/cem_authors.py --authors /tmp/cem --model cem|intcem [--protocol same|own|both] [--seeds 3]

Both libraries train the same architecture on the same splits (the MLP encoder of the bench
configs, m = 128, linear head; IntCEM adds the policy MLP 256-128 with batch norm) with the same
optimiser (Adam, lr 0.01, weight decay 4e-5, batch 256) and RandInt 0.25. CEM shares one
probability scorer between concepts in both (the authors' default); IntCEM gives each its own.
IntCEM runs with its defaults (lambda_roll 5, task discount 1.1, horizon 2 -> 6 at x1.005 per
step): the authors' synthetic configs hold no IntCEM run, so these are their CEM synthetic
settings with IntCEM's defaults. Two protocols, reported separately:

- ``same``: exactly ``--epochs`` epochs each (default 100), validation after every epoch, no
  early stopping, the last epoch's weights kept, RandInt with one mask per batch (as the
  authors' code draws it). What still differs: the learning-rate schedule (ReduceLROnPlateau on
  the validation loss here, on the training loss in theirs) and, for IntCEM, trajectory lengths
  (one per sample here, one per batch in theirs: equal when the RandInt mask is shared by the
  batch), the oracle's target (conceptlab masks units already corrected) and their loop's
  per-sample Python. The per-epoch time ratio comes from this protocol.
- ``own``: each library as it is used. conceptlab: the bench config (RandInt per sample, as the
  paper), up to 500 epochs, early stopping after 15 epochs without a better validation loss, best
  weights kept. The authors': RandInt per batch (their code's only scheme), 500 epochs,
  validation every 30 (their synthetic configs), early stopping with patience 15 on their
  validation loss (their concept loss only, which stops improving long before the task does,
  so it never ends a run early), last weights kept. The time ratio to a trained model comes
  from this protocol: it mixes speed with each protocol's stopping rule.

Both models are then evaluated by the same code: conceptlab's task accuracy and intervention
curves (random, uncertainty; for IntCEM also the learned policy by argmax and sampled from its
softmax as the authors do; units are single concepts here) on the test split, the authors' model
wrapped as a conceptlab ``ConceptModel``. One thread each, one library after the other for
every seed (so both see the same machine load).

Writes ``MODEL_authors.json`` (every run) and ``MODEL_authors.md`` (mean ± std, differences and
time ratios per protocol) into ``--out``; reruns resume.
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

POLICIES = {"cem": ("random", "uncertainty"), "intcem": ("random", "uncertainty", "learned", "learned-sample")}
PROTOCOLS = ("same", "own")


class AuthorsCEM(ConceptModel):
    """The authors' trained ``ConceptEmbeddingModel`` read through conceptlab's interface: their
    encoder, context and probability generators and head, unchanged."""

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
        scorers = self.inner.concept_prob_generators
        logits = [scorers[0 if self.inner.shared_prob_gen else i](context[:, i]) for i in range(self.n_concepts)]
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


class AuthorsIntCEM(AuthorsCEM):
    """The authors' trained ``IntAwareConceptEmbeddingModel``: a CEM with their rank model as the learned policy."""

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


def train_authors(model_key: str, splits, spec, seed: int, protocol: str, epochs: int) -> tuple[ConceptModel, float, int, dict]:
    import pytorch_lightning as pl
    from cem.models.cem import ConceptEmbeddingModel
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
    common = dict(
        n_concepts=info.n_concepts, n_tasks=1 if binary else info.n_classes, emb_size=spec.model.embedding_size,
        training_intervention_prob=spec.model.randint, concept_loss_weight=train.concept_weight,
        c_extractor_arch=lambda output_dim: mlp(in_features, spec.model.latent_dim, spec.model.hidden),
        learning_rate=train.lr, weight_decay=train.weight_decay, optimizer=train.optimizer,
    )
    if model_key == "cem":
        model, adapter_class = ConceptEmbeddingModel(**common), AuthorsCEM
    else:
        model, adapter_class = IntAwareConceptEmbeddingModel(
            **common, intervention_task_discount=settings.task_discount, intervention_weight=settings.intervention_weight,
            intervention_discount=settings.policy_discount, int_model_layers=list(spec.model.policy_hidden),
            max_horizon=settings.max_horizon, initial_horizon=settings.initial_horizon, horizon_rate=settings.horizon_rate,
        ), AuthorsIntCEM
    if protocol == "same":
        options = dict(max_epochs=epochs, check_val_every_n_epoch=1, callbacks=[])
    else:
        options = dict(max_epochs=train.max_epochs, check_val_every_n_epoch=30, callbacks=[
            EarlyStopping(monitor="val_loss", min_delta=0.0, patience=train.early_stopping_patience, mode="min")])
    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, **options)
    start = time.perf_counter()
    trainer.fit(model, loader(splits.train, True), loader(splits.val, False))
    seconds = time.perf_counter() - start
    adapter = adapter_class(model, info.n_classes).eval()
    with torch.no_grad():  # the adapter must predict exactly what the authors' own forward pass does
        x = splits.test.x[:512]
        if not torch.allclose(adapter(x).task_logits, model(x)[2].reshape(len(x), -1), atol=1e-5):
            raise RuntimeError("the adapter disagrees with the authors' forward pass; their model has changed")
    return adapter, seconds, trainer.current_epoch, {}


def train_ours(model_key: str, splits, spec, seed: int, protocol: str, epochs: int) -> tuple[ConceptModel, float, int, dict]:
    key = MODEL_KEYS[model_key]
    train = replace(spec.train, seed=seed, device="cpu")
    if protocol == "same":  # the authors' RandInt draws one mask per batch
        train = replace(train, max_epochs=epochs, early_stopping_patience=0, keep="last")
        spec = replace(spec, model=replace(spec.model, randint_per="batch"))
    with seeded(seed):
        model = key.build(splits.train.x.shape[1], splits.info, spec.model)
    report = fit(model, splits, key.recipe, config=key.train_config(train, spec.model))
    mechanism = {}
    if model_key == "intcem":
        history = report.history["intcem"]
        mechanism = {"trajectory_steps": statistics.fmean(history["trajectory_steps"]),
                     "trajectory_samples": statistics.fmean(history["trajectory_samples"])}
    return model.eval(), report.seconds, report.epochs, mechanism


def measure(model_key: str, model: ConceptModel, test, seed: int) -> dict:
    result = {"task_accuracy": 100 * evaluate(model, test)["task_accuracy"]}
    for policy in POLICIES[model_key]:
        curve = intervention_curve(model, test, policy, groups=True, repeats=5, seed=seed)
        result[f"auc_{policy}"] = 100 * curve.auc
        result[f"curve_{policy}"] = [100 * a for a in curve.accuracy_mean]
    return result


def summary(model_key: str, runs: list[dict]) -> str:
    metrics = ["task_accuracy"] + [f"auc_{p}" for p in POLICIES[model_key]] + ["epochs", "train_seconds", "seconds_per_epoch"]
    lines = []
    for protocol in PROTOCOLS:
        chosen = [r for r in runs if r["protocol"] == protocol]
        if not chosen:
            continue
        lines += [f"### protocol: {protocol}", "",
                  "| dataset | metric | conceptlab | authors | ours - theirs (time: theirs / ours) |", "|---|---|---|---|---|"]
        for dataset in dict.fromkeys(r["dataset"] for r in chosen):
            for metric in metrics:
                values = {lib: [r[metric] for r in chosen if r["dataset"] == dataset and r["library"] == lib]
                          for lib in ("conceptlab", "authors")}
                if not all(values.values()):
                    continue

                def cell(xs: list[float]) -> str:
                    return f"{statistics.fmean(xs):.2f} ± {statistics.pstdev(xs):.2f}"

                ours, theirs = statistics.fmean(values["conceptlab"]), statistics.fmean(values["authors"])
                gap = f"{theirs / ours:.1f}x" if metric in ("train_seconds", "seconds_per_epoch") else f"{ours - theirs:+.2f}"
                lines.append(f"| {dataset} | {metric} | {cell(values['conceptlab'])} | {cell(values['authors'])} | {gap} |")
            steps = [r["trajectory_steps"] for r in chosen
                     if r["dataset"] == dataset and r["library"] == "conceptlab" and "trajectory_steps" in r]
            if steps:
                lines.append(f"| {dataset} | conceptlab steps with a trajectory | {statistics.fmean(steps):.2f} | | |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a checkout of github.com/mateoespinosa/cem")
    parser.add_argument("--model", choices=tuple(POLICIES), default="cem")
    parser.add_argument("--datasets", default="xor,trig,dot")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--protocol", choices=("same", "own", "both"), default="both")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the same protocol")
    parser.add_argument("--out", help="default: results/MODEL-authors")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.authors).resolve()))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    out = Path(args.out or f"results/{args.model}-authors")
    path = out / f"{args.model}_authors.json"
    runs = json.loads(path.read_text()) if path.exists() else []  # resumes: finished runs are kept
    done = {(r["protocol"], r["dataset"], r["seed"], r["library"]) for r in runs}
    protocols = PROTOCOLS if args.protocol == "both" else (args.protocol,)
    for protocol in protocols:
        for dataset in args.datasets.split(","):
            spec = load_spec(dataset)
            for seed in range(args.seeds):
                splits = load_dataset(spec.dataset, seed=seed)
                for library, train in (("conceptlab", train_ours), ("authors", train_authors)):
                    if (protocol, dataset, seed, library) in done:
                        continue
                    model, seconds, epochs, mechanism = train(args.model, splits, spec, seed, protocol, args.epochs)
                    run = {"protocol": protocol, "dataset": dataset, "seed": seed, "library": library,
                           "train_seconds": seconds, "epochs": epochs, "seconds_per_epoch": seconds / max(epochs, 1),
                           **mechanism, **measure(args.model, model, splits.test, seed)}
                    runs.append(run)
                    write_atomic(path, json.dumps(runs, indent=1))
                    aucs = " ".join(f"{p} {run[f'auc_{p}']:.2f}" for p in POLICIES[args.model])
                    print(f"{protocol} {dataset} seed {seed} {library:10s} acc {run['task_accuracy']:.2f} AUC {aucs} "
                          f"({seconds:.1f} s, {epochs} epochs)", flush=True)
    table = summary(args.model, runs)
    write_atomic(out / f"{args.model}_authors.md", table)
    print(table)


if __name__ == "__main__":
    main()
