"""Training hyperparameters."""

from __future__ import annotations

from typing import Literal

from ..settings import (
    Bool,
    Fraction,
    Int,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    settings,
    validated,
)


@settings
class IntCEMConfig:
    """The trajectory objective of IntCEM (defaults: the authors' code and configs).

    Per batch a trajectory of T corrections is sampled (T grows with the horizon limit, which
    starts at ``initial_horizon`` and is multiplied by ``horizon_rate`` every training step, up
    to ``max_horizon``). Loss = concept_weight * L_concept + ``intervention_weight`` * L_policy
    (imitating the greedy oracle at every step, steps discounted by ``policy_discount``) +
    ``trajectory_task_weight`` * L_task (the task loss before the trajectory and, weighted by
    ``task_discount`` ** T, after it).
    """

    intervention_weight: NonNegativeFloat = 5.0
    trajectory_task_weight: NonNegativeFloat = 1.0
    task_discount: PositiveFloat = 1.1
    policy_discount: PositiveFloat = 1.0
    initial_horizon: PositiveFloat = 2.0
    horizon_rate: PositiveFloat = 1.005
    max_horizon: PositiveInt = 6


@settings
class PosthocConfig:
    """The sparse head of a post-hoc CBM (defaults: the PCBM authors' CUB settings): elastic-net
    strength ``lam`` and its L1 share ``l1_ratio`` (scikit-learn's convention), solved to ``tol``;
    and how PCBM-h's residual is trained: ``residual: authors`` (the default: their
    train_pcbm_h.py, default layer initialisation, Adam lr 0.01, batch 64, 20 epochs,
    cross-entropy + 0.001 * mean(W^2), last epoch kept; chosen on cub100's validation split,
    87.11 % against 85.94 %, experiments/pcbm-h-residual.yaml) or ``early-stopping`` (the run's
    optimiser, zero-initialised, early stopping on validation, best epoch kept)."""

    lam: NonNegativeFloat = 2e-4
    l1_ratio: Fraction = 0.99
    max_iter: PositiveInt = 20000
    tol: PositiveFloat = 1e-5
    residual: Literal["authors", "early-stopping"] = "authors"


@settings
class TrainConfig:
    """Everything a training recipe reads, validated on construction. Defaults: the CEM paper's
    synthetic settings."""

    batch_size: PositiveInt = 256
    max_epochs: PositiveInt = 500
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 4e-5
    momentum: Fraction = 0.9  # SGD only
    lr_factor: Fraction = 0.1  # ReduceLROnPlateau on the validation loss
    lr_patience: NonNegativeInt = 10
    early_stopping_patience: NonNegativeInt = 15  # on the validation loss; 0 disables early stopping
    keep: Literal["best", "last"] = "best"  # weights a stage ends with: its best validation epoch's, or its last
    concept_weight: NonNegativeFloat = 1.0  # alpha in L = L_task + alpha * L_concept (joint recipe)
    concept_class_weighting: Bool = False  # weight each concept's positives by n_neg / n_pos
    intervention_prob: Fraction = 0.0  # RandInt: probability of a training-time intervention
    intervention_per: Literal["sample", "batch"] = "sample"
    device: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"  # Lightning accelerator
    devices: PositiveInt = 1
    num_workers: NonNegativeInt = 2  # DataLoader workers for image datasets (tensor datasets need none)
    seed: Int = 0
    intcem: IntCEMConfig = IntCEMConfig()  # read by the intcem recipe only
    posthoc: PosthocConfig = PosthocConfig()  # read by the posthoc recipe only

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a config's ``train:`` block; unknown keys and bad values name the key."""
        return validated(cls, values, "train")
