"""ProbCBM side by side: conceptlab against the CEM authors' port of Kim et al.'s ProbCBM, same data and seeds.

    # the CEM authors' ProbCBM (cem/models/probcbm.py of github.com/pietrobarbiero/dcr at d67716c, Oct 2025, "based on
    # [Kim et al.'s] official implementation"; Kim et al.'s own repository, ejkim47/prob-cbm, is written for CUB images
    # with a ResNet and cannot read these vectors); set up /tmp/cem2025 and /tmp/authors as in benchmarks/mixcem_authors.py
    /tmp/authors/bin/python benchmarks/probcbm_authors.py --authors /tmp/cem2025 [--datasets xor,trig,dot] [--seeds 3] [--epochs 100]

Protocol, the same for both: the bench's XOR / Trig / Dot splits for the seed; an MLP 128-128 encoder;
concept embeddings of size 16, a class space of size 128 with a linear projection (their head; XOR
of corrected concepts is the case it cannot express, so this is where the two should fail alike),
50 samples per concept in training and the means in evaluation, KL weight 5e-5, joint training (their
``train_class_mode="joint"``), Adam lr 0.01 on every parameter (their ``lr_ratio`` set to 1; their
default trains the heads 10x faster), weight decay 4e-5, batch 256, exactly ``--epochs`` epochs, last
weights. What still differs: their encoder turns the MLP's output into a 8 x 16 x 16 feature map
that their per-concept attention modules (PIENet) read, conceptlab's reads the 128-wide code with a
linear layer per concept; their head trains on all of a sample's concepts replaced by the true
anchors in half of the draws, conceptlab adds a task term on the anchors.

Evaluation, the same code for both (their model behind a ``ConceptModel`` adapter that calls their
``inner_forward`` with the intervention): task and concept accuracy on the test split and the
random and ``concept-uncertainty`` curves over single concepts, 5 orders.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
import warnings
from dataclasses import replace

import torch
from torch import Tensor, nn

from conceptlab.bench import load_spec
from conceptlab.datasets import load_dataset
from conceptlab.interventions import intervention_curve
from conceptlab.metrics import evaluate
from conceptlab.models import ConceptModel, ConceptOutput, Intervention, mlp, probcbm
from conceptlab.training import fit, seeded

SIZES = dict(embedding_size=16, class_embedding_size=128, samples=50, kl_weight=5e-5)
AUTHORS_LATENT = 8  # channels of the feature map their encoder makes (8 x 16 x 16 values from the MLP)


class PlateauWithoutVerbose(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch >= 2.7 dropped ReduceLROnPlateau's ``verbose`` argument, which the authors' code passes."""

    def __init__(self, *args, verbose=None, **kwargs):
        super().__init__(*args, **kwargs)


class AuthorsProbCBM(ConceptModel):
    """Their trained ProbCBM through conceptlab's interface: every prediction is their ``inner_forward``."""

    reports_uncertainty = True

    def __init__(self, inner: nn.Module, n_concepts: int, n_classes: int):
        super().__init__()
        self.inner, self.n_concepts, self.n_classes = inner, n_concepts, n_classes
        self.head = inner.head

    def encode(self, x: Tensor) -> Tensor:
        return x

    def decode(self, x: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        options = {} if intervention is None else {"c": intervention.values, "intervention_idxs": intervention.mask.float()}
        out = self.inner.inner_forward(x, train=False, **options)
        log_probs = out["pred_class_prob"].clamp(min=1e-12).log()
        logits = log_probs[:, 1:] - log_probs[:, :1] if self.n_classes == 2 else log_probs
        probs = out["pred_concept_prob"]
        uncertainty = out["pred_concept_uncertainty"]
        if intervention is not None:
            uncertainty = uncertainty.masked_fill(intervention.mask, 0.0)
        return ConceptOutput(logits, logits, torch.logit(probs, eps=1e-6), probs, concept_uncertainty=uncertainty)


def train_authors(splits, spec, seed: int, epochs: int) -> tuple[ConceptModel, float]:
    import pytorch_lightning as pl
    from cem.models.probcbm import ProbCBM

    torch.optim.lr_scheduler.ReduceLROnPlateau = PlateauWithoutVerbose  # only a removed logging flag differs
    info, train = splits.info, spec.train
    in_features = splits.train.x.shape[1]

    def loader(part, shuffle: bool):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(part.x, part.y.long(), part.c.float()),
                                           batch_size=train.batch_size, shuffle=shuffle)

    pl.seed_everything(seed, workers=True)
    model = ProbCBM(n_concepts=info.n_concepts, n_tasks=info.n_classes, hidden_dim=SIZES["embedding_size"],
                    class_hidden_dim=SIZES["class_embedding_size"], n_samples_inference=SIZES["samples"],
                    vib_beta=SIZES["kl_weight"], train_class_mode="joint", latent_dim=AUTHORS_LATENT, lr_ratio=1,
                    c_extractor_arch=lambda output_dim: mlp(in_features, output_dim, spec.model.hidden),
                    learning_rate=train.lr, weight_decay=train.weight_decay, optimizer=train.optimizer)
    start = time.perf_counter()
    pl.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False).fit(model, loader(splits.train, True),
                                                                          loader(splits.val, False))
    return AuthorsProbCBM(model.eval(), info.n_concepts, info.n_classes).eval(), time.perf_counter() - start


def train_ours(splits, spec, seed: int, epochs: int) -> tuple[ConceptModel, float]:
    train = replace(spec.train, seed=seed, device="cpu", max_epochs=epochs, early_stopping_patience=0, keep="last",
                    intervention_prob=0.0)
    with seeded(seed):
        model = probcbm(in_features=splits.train.x.shape[1], n_concepts=splits.info.n_concepts, n_classes=splits.info.n_classes,
                        latent_dim=spec.model.latent_dim, hidden=spec.model.hidden, **SIZES)
    report = fit(model, splits, "joint", config=train)
    return model.eval(), report.seconds


def measure(model: ConceptModel, test, seed: int) -> dict:
    metrics = evaluate(model, test)
    result = {"task": 100 * metrics["task_accuracy"], "concept": 100 * metrics["concept_accuracy"]}
    for policy in ("random", "concept-uncertainty"):
        curve = intervention_curve(model, test, policy, groups=False, repeats=5, seed=seed)
        result[policy] = [100 * v for v in curve.accuracy_mean]
        result[f"auc {policy}"] = 100 * curve.auc
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a folder holding the authors' cem/ package with ProbCBM")
    parser.add_argument("--datasets", default="xor,trig,dot")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    args = parser.parse_args()
    sys.path.insert(0, args.authors)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    rows: list[dict] = []
    for dataset in args.datasets.split(","):
        spec = load_spec(dataset)
        for seed in range(args.seeds):
            splits = load_dataset(spec.dataset, seed=seed)
            for library, train in (("conceptlab", train_ours), ("authors", train_authors)):
                model, seconds = train(splits, spec, seed, args.epochs)
                row = {"dataset": dataset, "seed": seed, "library": library, "seconds": seconds,
                       **measure(model, splits.test, seed)}
                rows.append(row)
                print(f"{dataset} seed {seed} {library:10s} acc {row['task']:.2f} concepts {row['concept']:.2f} "
                      f"all corrected {row['random'][-1]:.2f} AUC random {row['auc random']:.2f} "
                      f"concept-uncertainty {row['auc concept-uncertainty']:.2f} ({seconds:.1f} s)", flush=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    print("\n| dataset | library | task accuracy | concept accuracy | every concept corrected | AUC random "
          "| AUC concept-uncertainty |\n|---|---|---|---|---|---|---|")
    for dataset in args.datasets.split(","):
        for library in ("conceptlab", "authors"):
            chosen = [r for r in rows if r["dataset"] == dataset and r["library"] == library]
            print(f"| {dataset} | {library} | {cell([r['task'] for r in chosen])} | {cell([r['concept'] for r in chosen])} | "
                  f"{cell([r['random'][-1] for r in chosen])} | {cell([r['auc random'] for r in chosen])} | "
                  f"{cell([r['auc concept-uncertainty'] for r in chosen])} |")


if __name__ == "__main__":
    main()
