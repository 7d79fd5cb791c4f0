"""MixCEM side by side: conceptlab against the authors' implementation on clean and shifted inputs.

    # the authors' CEM package with MixCEM (cem/ of github.com/pietrobarbiero/dcr at d67716c, Oct 2025,
    # which carries the CEM repository's newest code; the fetchable mateoespinosa/cem stops in March 2024)
    mkdir -p /tmp/cem2025 && cd /work/.mirror/pietrobarbiero+dcr/repo
    for f in $(git ls-tree -r --name-only HEAD cem | grep "\\.py$"); do mkdir -p /tmp/cem2025/$(dirname $f); git show HEAD:$f > /tmp/cem2025/$f; done
    python -m venv --system-site-packages /tmp/authors && /tmp/authors/bin/pip install "pytorch-lightning<2" "setuptools<70"
    /tmp/authors/bin/python benchmarks/mixcem_authors.py --authors /tmp/cem2025 [--seeds 3] [--epochs 100] [--noise 1.0]

Data: the bundled ``incomplete9`` config (four of nine concepts hidden), seeds 0..n-1; the shift is
``mixcem_shift.shifted`` (Gaussian noise of sd ``--noise`` on every test input). Both libraries train
the same architecture (the config's MLP encoder 128-128 to a 128-wide code, m = 16, linear head) with
the same optimiser (Adam, lr 0.01, weight decay 4e-5, batch 256), RandInt 0.25 with one mask per
batch (the authors' scheme), the authors' MixCEM defaults (residual dropout 0.5, prior weight 1,
entropy temperature 1), exactly ``--epochs`` epochs, the last weights kept. Then each calibrates as
it does: the authors' pipeline trains the Platt scales and biases alone for 30 epochs on the
validation split with the whole training loss (this script runs their model's own training step
for that, as their ``train.py`` does); conceptlab fits them by L-BFGS on the concepts' loss.

Evaluation, the same code for both: task and concept accuracy, and the random-policy curve over
concept groups (5 orders) on the clean and the shifted test inputs; the authors' model is read
through a ``ConceptModel`` adapter that calls their own embedding, mixing and label functions
(their 50 Monte Carlo dropout masks per prediction; conceptlab uses their expectation). The
adapter is checked against their ``_forward`` before use. One thread, one library after the other.
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
from mixcem_shift import ceiling, shifted
from torch import Tensor, nn

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import load_dataset
from conceptlab.interventions import intervention_curve
from conceptlab.metrics import evaluate
from conceptlab.models import ConceptModel, ConceptOutput, Intervention, mlp
from conceptlab.training import fit, seeded


class AuthorsMixCEM(ConceptModel):
    """The authors' trained ``MixCEM`` through conceptlab's interface, computed by their own methods."""

    def __init__(self, inner: nn.Module, n_classes: int):
        super().__init__()
        self.inner, self.n_concepts, self.n_classes = inner, inner.n_concepts, n_classes
        self.head = inner.c2y_model

    def encode(self, x: Tensor) -> Tensor:
        latent = self.inner.pre_concept_model(x)
        return torch.stack([self.inner._generate_dynamic_concept(latent, i) for i in range(self.n_concepts)], dim=1)

    def decode(self, dynamic: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        table = self.inner.concept_embeddings  # (k, 2, m): global positive and negative embeddings
        global_contexts = torch.cat([table[:, 0], table[:, 1]], dim=-1).unsqueeze(0).expand(len(dynamic), -1, -1)
        probs, positive, negative, _ = self.inner._generate_concept_embeddings(None, latent=(dynamic, global_contexts))
        mixed = probs if intervention is None else torch.where(intervention.mask, intervention.values.to(probs.dtype), probs)
        bottleneck = self.inner._construct_c2y_input(positive, negative, mixed)
        logits = self.inner._predict_labels(bottleneck).reshape(len(dynamic), -1)
        return ConceptOutput(logits, bottleneck[..., 0].flatten(1), torch.logit(probs, eps=1e-6), probs)


class PlateauWithoutVerbose(torch.optim.lr_scheduler.ReduceLROnPlateau):
    """torch >= 2.7 dropped ReduceLROnPlateau's ``verbose`` argument, which the authors' code passes."""

    def __init__(self, *args, verbose=None, **kwargs):
        super().__init__(*args, **kwargs)


def train_authors(splits, spec, seed: int, epochs: int) -> tuple[ConceptModel, float]:
    import pytorch_lightning as pl
    from cem.models.mixcem import MixCEM

    torch.optim.lr_scheduler.ReduceLROnPlateau = PlateauWithoutVerbose  # only a removed logging flag differs

    info, train = splits.info, spec.train
    binary = info.n_classes == 2
    in_features = splits.train.x.shape[1]

    def loader(part, shuffle: bool):
        y = part.y.float() if binary else part.y.long()
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(part.x, y, part.c.float()),
                                           batch_size=train.batch_size, shuffle=shuffle)

    pl.seed_everything(seed, workers=True)
    model = MixCEM(n_concepts=info.n_concepts, n_tasks=1 if binary else info.n_classes, emb_size=spec.model.embedding_size,
                   training_intervention_prob=spec.model.randint, concept_loss_weight=train.concept_weight,
                   c_extractor_arch=lambda output_dim: mlp(in_features, spec.model.latent_dim, spec.model.hidden),
                   learning_rate=train.lr, weight_decay=train.weight_decay, optimizer=train.optimizer)
    options = dict(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False)
    start = time.perf_counter()
    pl.Trainer(max_epochs=epochs, **options).fit(model, loader(splits.train, True), loader(splits.val, False))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    for p in model.parameters():
        p.requires_grad = False
    model.unfreeze_calibration_components()  # their step 2: the Platt parameters alone, on the validation split
    pl.Trainer(max_epochs=30, **options).fit(model, loader(splits.val, True), loader(splits.val, False))
    for name, p in model.named_parameters():
        p.requires_grad = name in trainable
    seconds = time.perf_counter() - start
    adapter = AuthorsMixCEM(model, info.n_classes).eval()
    with torch.no_grad():  # with the dropout masks fixed (all kept), the adapter must give their own forward pass
        model.deterministic = True
        x, c = splits.test.x[:256], splits.test.c[:256]
        mask = torch.rand(c.shape, generator=torch.Generator().manual_seed(0)) < 0.5
        theirs = model._forward(x, intervention_idxs=mask.float(), c=c)[2].reshape(len(x), -1)
        ours = adapter(x, Intervention(mask, c)).task_logits
        model.deterministic = False
        if not torch.allclose(theirs, ours, atol=1e-5):
            raise RuntimeError("the adapter disagrees with the authors' forward pass; their model has changed")
    return adapter, seconds


def train_ours(splits, spec, seed: int, epochs: int) -> tuple[ConceptModel, float]:
    key = MODEL_KEYS["mixcem"]
    train = replace(spec.train, seed=seed, device="cpu", max_epochs=epochs, early_stopping_patience=0, keep="last")
    settings = replace(spec.model, randint_per="batch")
    with seeded(seed):
        model = key.build(splits.train.x.shape[1], splits.info, settings)
    report = fit(model, splits, key.recipe, config=key.train_config(train, settings))
    return model.eval(), report.seconds


def measure(model: ConceptModel, splits, noise: float, seed: int) -> dict:
    result = {}
    for condition, test in (("clean", splits.test), ("shifted", shifted(splits.test, noise, seed))):
        with seeded(seed):  # the authors' Monte Carlo masks
            metrics = evaluate(model, test)
            curve = intervention_curve(model, test, "random", groups=True, repeats=5, seed=seed)
        result[condition] = {"task": 100 * metrics["task_accuracy"], "concept": 100 * metrics["concept_accuracy"],
                             "curve": [100 * v for v in curve.accuracy_mean]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="a folder holding the authors' cem/ package with MixCEM")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--noise", type=float, default=1.0)
    args = parser.parse_args()
    sys.path.insert(0, args.authors)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    spec = load_spec("incomplete9")
    runs: dict[str, list[dict]] = {"conceptlab": [], "authors": []}
    ceilings = []
    for seed in range(args.seeds):
        splits = load_dataset(spec.dataset, seed=seed)
        ceilings.append(ceiling(splits))
        for library, train in (("conceptlab", train_ours), ("authors", train_authors)):
            model, seconds = train(splits, spec, seed, args.epochs)
            runs[library].append({**measure(model, splits, args.noise, seed), "seconds": seconds})
            run = runs[library][-1]
            print(f"seed {seed} {library:10s} " + "; ".join(
                f"{c} acc {run[c]['task']:.2f} concepts {run[c]['concept']:.2f} all corrected {run[c]['curve'][-1]:.2f}"
                for c in ("clean", "shifted")) + f" ({seconds:.1f} s)", flush=True)

    def cell(values: list[float]) -> str:
        return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    print(f"\nconcepts-only ceiling: {cell(ceilings)}")
    print("\n| library | inputs | task accuracy | concept accuracy | 2 groups corrected | every group corrected |"
          "\n|---|---|---|---|---|---|")
    for library, values in runs.items():
        for condition in ("clean", "shifted"):
            chosen = [v[condition] for v in values]
            print(f"| {library} | {condition} | {cell([v['task'] for v in chosen])} | {cell([v['concept'] for v in chosen])} | "
                  f"{cell([v['curve'][2] for v in chosen])} | {cell([v['curve'][-1] for v in chosen])} |")


if __name__ == "__main__":
    main()
