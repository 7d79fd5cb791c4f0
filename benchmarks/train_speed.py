"""Training speed on the synthetic XOR task, conceptlab against pytorch-concepts in the same run.

    python benchmarks/train_speed.py            # conceptlab only
    pip install --pre pytorch-concepts==1.0.0a7 tables   # optional peer (a separate venv is wise)
    python benchmarks/train_speed.py --epochs 100

Part 1 trains CEM and Fuzzy-CBM on XOR (seed 0) at the paper's settings (batch 256, up to 500
epochs, early stopping on the validation loss) and prints the seconds per model-seed (for a
ratio against the authors' code, run both in the same session: benchmarks/cem_authors.py).
Part 2 trains a CEM (m = 128, same MLP encoder, Adam lr 0.01, batch 256) for a fixed number of
epochs in both libraries, one thread each, and prints the ratio of wall times.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import torch

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.datasets import xor
from conceptlab.metrics import evaluate
from conceptlab.models import cem
from conceptlab.training import TrainConfig, fit, seeded


def paper_settings() -> None:
    spec = load_spec("xor")
    splits = xor(seed=0)
    total = 0.0
    for key in ("cem", "cbm-fuzzy"):
        entry = MODEL_KEYS[key]
        with seeded(0):
            model = entry.build(2, splits.info, spec.model)
        config = entry.train_config(spec.train, spec.model)
        start = time.perf_counter()
        report = fit(model, splits, entry.recipe, config=config)
        seconds = time.perf_counter() - start
        total += seconds
        acc = evaluate(model, splits.test)["task_accuracy"]
        print(f"conceptlab {key:9s}: {seconds:6.2f} s, {report.epochs} epochs, test accuracy {100 * acc:.2f}%")
    per_model = total / 2
    print(f"conceptlab per model-seed: {per_model:.2f} s")


def conceptlab_fixed_epochs(epochs: int) -> float:
    splits = xor(seed=0)
    with seeded(0):
        model = cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=128)
    config = TrainConfig(max_epochs=epochs, early_stopping_patience=0, weight_decay=0.0, intervention_prob=0.25, device="cpu")
    start = time.perf_counter()
    fit(model, splits, "joint", config=config)
    seconds = time.perf_counter() - start
    acc = evaluate(model, splits.test)["task_accuracy"]
    print(f"conceptlab CEM, {epochs} epochs: {seconds:6.2f} s, test accuracy {100 * acc:.2f}%")
    return seconds


def peer_fixed_epochs(epochs: int) -> float | None:
    try:
        import pytorch_lightning as pl
        from torch_concepts.data import ToyDataset
        from torch_concepts.data.base.datamodule import ConceptDataModule
        from torch_concepts.nn import ConceptLoss, ConceptMetrics
        from torch_concepts.nn.modules.high.models.cem import ConceptEmbeddingModel
        from torchmetrics.classification import BinaryAccuracy
    except ImportError:
        print("pytorch-concepts is not installed: peer comparison skipped")
        return None
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        data = ToyDataset(dataset="xor", seed=0, n_gen=3000, root=root)
        module = ConceptDataModule(data, val_size=0.1, test_size=0.2, batch_size=256, seed=0)
        torch.manual_seed(0)
        encoder = torch.nn.Sequential(
            torch.nn.Linear(2, 128), torch.nn.LeakyReLU(), torch.nn.Linear(128, 128), torch.nn.LeakyReLU(), torch.nn.Linear(128, 128)
        )
        model = ConceptEmbeddingModel(
            input_size=2, annotations=data.annotations, task_names=["xor"], embedding_size=128,
            backbone=encoder, latent_size=128, lightning=True,
            loss=ConceptLoss(binary=torch.nn.BCEWithLogitsLoss()),
            metrics=ConceptMetrics(data.annotations, binary={"accuracy": BinaryAccuracy}, per_concept=["xor"]),
            optim_class=torch.optim.Adam, optim_kwargs={"lr": 0.01},
        )
        trainer = pl.Trainer(max_epochs=epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, accelerator="cpu")
        start = time.perf_counter()
        trainer.fit(model, datamodule=module)
        seconds = time.perf_counter() - start
        result = trainer.test(model, datamodule=module, verbose=False)[0]
    acc = next((v for k, v in result.items() if "xor" in k and "accuracy" in k), float("nan"))
    print(f"pytorch-concepts CEM, {epochs} epochs: {seconds:6.2f} s, test accuracy {100 * acc:.2f}%")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100, help="fixed epochs for the side-by-side CEM run")
    parser.add_argument("--skip-paper", action="store_true", help="skip part 1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    if not args.skip_paper:
        paper_settings()
    ours = conceptlab_fixed_epochs(args.epochs)
    theirs = peer_fixed_epochs(args.epochs)
    if theirs:
        print(f"pytorch-concepts / conceptlab wall time: {theirs / ours:.2f}x")


if __name__ == "__main__":
    main()
