"""Training hyperparameters."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from ..settings import reject_unknown_keys


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training recipe reads. Defaults: the CEM paper's synthetic settings."""

    batch_size: int = 256
    max_epochs: int = 500
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = 0.01
    weight_decay: float = 4e-5
    momentum: float = 0.9  # SGD only
    lr_factor: float = 0.1  # ReduceLROnPlateau on the validation loss
    lr_patience: int = 10
    early_stopping_patience: int = 15  # on the validation loss; 0 disables early stopping
    concept_weight: float = 1.0  # alpha in L = L_task + alpha * L_concept (joint recipe)
    concept_class_weighting: bool = False  # weight each concept's positives by n_neg / n_pos
    intervention_prob: float = 0.0  # RandInt: probability of a training-time intervention
    intervention_per: Literal["sample", "batch"] = "sample"
    device: str = "auto"  # Lightning accelerator: auto, cpu, cuda, gpu, mps
    devices: int = 1
    checkpoint_dir: str | None = None  # keep the best checkpoint of each stage here
    num_workers: int = 2  # DataLoader workers for image datasets (tensor datasets need none)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose adam or sgd")
        if self.intervention_per not in ("sample", "batch"):
            raise ValueError(f"intervention_per must be 'sample' or 'batch'; got {self.intervention_per!r}")
        if not 0.0 <= self.intervention_prob <= 1.0:
            raise ValueError(f"intervention_prob must lie in [0, 1]; got {self.intervention_prob}")
        if self.batch_size < 1 or self.max_epochs < 1:
            raise ValueError("batch_size and max_epochs must be positive")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a mapping, rejecting keys that no field reads."""
        reject_unknown_keys(values, (f.name for f in fields(cls)), "training setting(s)")
        return cls(**values)
