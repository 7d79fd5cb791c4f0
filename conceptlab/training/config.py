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

    Attributes:
        intervention_weight: Weight of the policy loss L_policy.
        trajectory_task_weight: Weight of the task loss around the trajectory.
        task_discount: The task loss after T corrections is weighted by this ** T.
        policy_discount: Discount of the policy loss per trajectory step.
        initial_horizon: The horizon limit at the first training step.
        horizon_rate: Factor applied to the horizon limit every training step.
        max_horizon: The horizon limit's ceiling.
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
    optimiser, zero-initialised, early stopping on validation, best epoch kept).

    Attributes:
        lam: Elastic-net strength.
        l1_ratio: The L1 share of the penalty.
        max_iter: The solver's iteration limit.
        tol: The solver's tolerance.
        residual: How PCBM-h's residual is trained: ``authors`` or ``early-stopping``.
    """

    lam: NonNegativeFloat = 2e-4
    l1_ratio: Fraction = 0.99
    max_iter: PositiveInt = 20000
    tol: PositiveFloat = 1e-5
    residual: Literal["authors", "early-stopping"] = "authors"


@settings
class TrainConfig:
    """Everything a training recipe reads, validated on construction. Defaults: the CEM paper's
    synthetic settings.

    Attributes:
        batch_size: Samples per step.
        max_epochs: Epoch limit of each stage.
        optimizer: ``adam`` or ``sgd``.
        lr: Learning rate.
        weight_decay: L2 weight decay.
        momentum: SGD's momentum.
        lr_factor: ReduceLROnPlateau's factor on the validation loss.
        lr_patience: Epochs without a better validation loss before the rate drops.
        early_stopping_patience: Epochs without a better validation loss before a stage stops (0: never).
        keep: The weights a stage ends with: its ``best`` validation epoch's, or its ``last``.
        concept_weight: alpha in L = L_task + alpha * L_concept.
        concept_class_weighting: Weight each concept's positives by n_neg / n_pos.
        task_class_weighting: Weight each class's samples by n / (n_classes * n_class) in the task loss
            (Lightning-trained stages; the PCBM's sparse head is not weighted).
        intervention_prob: RandInt: probability of a training-time intervention.
        intervention_per: Draw RandInt's mask per ``sample`` or per ``batch``.
        device: Lightning accelerator: ``auto``, ``cpu``, ``cuda``, ``gpu`` or ``mps``.
        devices: Devices used.
        num_workers: DataLoader workers for image datasets.
        seed: Seeds each stage's batches.
        intcem: IntCEM's trajectory objective (the intcem recipe only).
        posthoc: The PCBM head and residual (the posthoc recipe only).
    """

    batch_size: PositiveInt = 256
    max_epochs: PositiveInt = 500
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: PositiveFloat = 0.01
    weight_decay: NonNegativeFloat = 4e-5
    momentum: Fraction = 0.9
    lr_factor: Fraction = 0.1
    lr_patience: NonNegativeInt = 10
    early_stopping_patience: NonNegativeInt = 15
    keep: Literal["best", "last"] = "best"
    concept_weight: NonNegativeFloat = 1.0
    concept_class_weighting: Bool = False
    task_class_weighting: Bool = False
    intervention_prob: Fraction = 0.0
    intervention_per: Literal["sample", "batch"] = "sample"
    device: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: PositiveInt = 1
    num_workers: NonNegativeInt = 2
    seed: Int = 0
    intcem: IntCEMConfig = IntCEMConfig()
    posthoc: PosthocConfig = PosthocConfig()

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Build from a config's ``train:`` block; unknown keys and bad values name the key."""
        return validated(cls, values, "train")
