"""What every conceptlab model shares: the Intervention it takes, its output type, its interface, batched prediction."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, fields

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ..info import TaskKind
from ..runtime import evaluating
from .concept_types import continuous_mask


@dataclass(frozen=True)
class Intervention:
    """Overwrite concept ``i`` of sample ``b`` with ``values[b, i]`` wherever ``mask[b, i]``.

    Attributes:
        mask: (B, k) booleans: which concepts of which samples are corrected.
        values: (B, k) the concept labels written there: 0 / 1 for binary and categorical concepts,
            the value for a continuous one; each model turns them into its own representation (a
            probability, a training-logit percentile, an embedding mixture). The model checks them
            against its concept types (``ConceptModel.check_intervention``).
            Where the mask is False a value is never read: NaN (a missing label) is allowed
            there and stored as 0; a NaN under the mask is refused.
    """

    mask: Tensor
    values: Tensor

    def __post_init__(self) -> None:
        mask, values = _as_tensor(self.mask, "mask"), _as_tensor(self.values, "values")
        if values.device != mask.device:
            values = values.to(mask.device)
        if mask.shape != values.shape or mask.ndim != 2:
            raise ValueError(
                f"intervention mask {tuple(mask.shape)} and values {tuple(values.shape)} "
                "must have the same (batch, n_concepts) shape"
            )
        if mask.dtype != torch.bool and not ((mask == 0) | (mask == 1)).all():
            raise ValueError("the intervention mask must hold booleans (or 0 / 1): True where a concept is overwritten")
        values = values.float()
        missing = torch.isnan(values) & mask.bool()
        if missing.any():
            raise ValueError(f"{int(missing.sum())} intervened concept label(s) are missing (NaN): a concept can only be "
                             "corrected with a known label; leave those concepts out of the mask")
        values = torch.where(mask.bool(), values, values.nan_to_num(0.0))
        if not torch.isfinite(values).all():
            raise ValueError("intervention values must be finite concept labels; pass the true labels (e.g. data.c)")
        object.__setattr__(self, "mask", mask.bool())
        object.__setattr__(self, "values", values)

    @classmethod
    def all(cls, values: Tensor) -> Intervention:
        """Intervene on every concept with ``values``."""
        return cls(torch.ones_like(values, dtype=torch.bool), values)

    def slice(self, index: slice | Tensor) -> Intervention:
        return Intervention(self.mask[index], self.values[index])

    def to(self, device: torch.device | str) -> Intervention:
        return Intervention(self.mask.to(device), self.values.to(device))


def _as_tensor(value, what: str) -> Tensor:
    """Lists and numpy arrays become tensors; anything else is refused with a message."""
    if isinstance(value, Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"intervention {what} must be a tensor, numpy array or nested list of numbers; "
                         f"got {type(value).__name__}") from None



@dataclass
class ConceptOutput:
    """One forward pass. Models without concepts (the black box) leave the concept fields ``None``.

    Attributes:
        task_logits: (B, 1) for a binary task, (B, n_classes) otherwise (``models.heads``).
        bottleneck: (B, D) what the task head read, interventions applied.
        concept_logits: (B, k) the model's own concept logits, before any intervention.
        concept_probs: (B, k) the model's own concept probabilities, before any intervention.
        concept_embeddings: (B, k, m) one vector per concept, for models that have them (CEM).
        concept_samples: (B, k, M) Monte Carlo samples of the concept logits, for stochastic models (SCBM).
        concept_scale: The spread of a stochastic model's concept distribution: (B, k, k) a square root A
            of the concept logits' covariance A A^T (SCBM); (B, k, D) the standard deviations of each
            concept embedding's coordinates (ProbCBM).
        concept_uncertainty: (B, k) how unsure the model is of each concept, for models that report it
            (``ConceptModel.reports_uncertainty``): the marginal variance of the concept logit (SCBM),
            exp of the mean embedding log-variance (ProbCBM); 0 for a corrected concept.
    """

    task_logits: Tensor
    bottleneck: Tensor
    concept_logits: Tensor | None = None
    concept_probs: Tensor | None = None
    concept_embeddings: Tensor | None = None
    concept_samples: Tensor | None = None
    concept_scale: Tensor | None = None
    concept_uncertainty: Tensor | None = None


@dataclass
class ConceptEffects:
    """Task logits under an intervention and what one more corrected concept would do to them;
    intervention policies that look ahead read these.

    Attributes:
        logits: (B, T) task logits with the intervention applied.
        to_zero: (B, k, T) change of those logits when concept ``i`` alone is, in addition, set to 0.
        to_one: (B, k, T) the same when it is set to 1.
    """

    logits: Tensor
    to_zero: Tensor
    to_one: Tensor

    def after_each_unit(self, units: Tensor, values: Tensor, fresh: Tensor) -> Tensor:
        """Task logits (B, G, T) after also setting each unit's ``fresh`` (B, k) concepts to
        ``values`` (B, k), for units (G, k); exact only for models with ``additive_effects``. A
        value other than 0 or 1 (a continuous concept's) moves the logits by the linear
        interpolation ``to_zero + v * (to_one - to_zero)``, exact for a head linear in the concepts."""
        values = values.unsqueeze(-1).to(self.to_one.dtype)
        change = torch.where(values == 1, self.to_one, self.to_zero)
        between = (values != 0) & (values != 1)
        if between.any():
            change = torch.where(between, self.to_zero + values * (self.to_one - self.to_zero), change)
        change = change * fresh.unsqueeze(-1)
        return self.logits.unsqueeze(1) + torch.einsum("gk,bkt->bgt", units.to(change.dtype), change)

    @classmethod
    def of_linear_head(cls, logits: Tensor, current: Tensor, zero: Tensor | float, one: Tensor | float,
                       weight: Tensor) -> ConceptEffects:
        """Closed form for a head linear in the concepts: writing value ``v`` into concept ``i``
        (bottleneck value ``current`` (B, k) now) moves the logits by (v - current) * ``weight`` (k, T)."""
        return cls(logits, (zero - current).unsqueeze(-1) * weight, (one - current).unsqueeze(-1) * weight)


def check_sizes(**sizes: int) -> None:
    """Raise a ``ValueError`` naming the first size that is not a whole number >= 1 (a builder's
    ``in_features``, ``n_concepts``, ``n_classes``, ...)."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a whole number >= 1; got {value!r}")


class ConceptModel(nn.Module):
    """Base class: ``forward(x, intervention=None) -> ConceptOutput``.

    The forward pass is split in two: ``encode(x)`` computes everything an intervention cannot
    change, ``decode(code, intervention)`` the rest, so intervention curves encode the inputs once.
    Subclasses set ``n_concepts`` (0 for models without concepts), ``n_classes`` and a ``head``
    module (the concept-to-task part), so training recipes can train or freeze the two parts
    without knowing the model.

    Examples:
        >>> from conceptlab.models import ConceptModel, cbm
        >>> isinstance(cbm(in_features=4, n_concepts=3, n_classes=2), ConceptModel)
        True
    """

    n_concepts: int
    n_classes: int
    head: nn.Module
    build_spec: dict | None = None  # the call that built it, recorded by models.registry; lets a saved model be rebuilt
    additive_effects: bool = False  # True when correcting several concepts adds up their single effects
    categorical: tuple[tuple[int, ...], ...] = ()  # member indices of each categorical concept (models.concept_types)
    continuous: tuple[int, ...] = ()  # indices of the continuous concepts (models.concept_types)
    task: TaskKind = "multiclass"  # what the head predicts (models.heads)
    reports_uncertainty: bool = False  # True when its outputs carry ConceptOutput.concept_uncertainty

    def encode(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, code: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        raise NotImplementedError

    def forward(self, x: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        return self.decode(self.encode(x), intervention)

    def concept_effects(self, code: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Task logits and the change from additionally setting each concept to 0 or 1.

        This generic version decodes the batch once per concept and value (2k decodes), which is
        exact for any model; models with a closed form (linear heads) override it.
        """
        k, batch = self.n_concepts, code.shape[0]
        logits = self.decode(code, intervention).task_logits
        mask = intervention.mask if intervention is not None else torch.zeros(batch, k, dtype=torch.bool, device=code.device)
        values = intervention.values if intervention is not None else torch.zeros(batch, k, device=code.device)
        alone = torch.eye(k, dtype=torch.bool, device=code.device).repeat_interleave(batch, 0)  # (k*B, k)
        codes = code.repeat(k, *([1] * (code.ndim - 1)))
        changes = []
        for value in (0.0, 1.0):
            written = torch.where(alone, value, values.repeat(k, 1).float())
            out = self.decode(codes, Intervention(mask.repeat(k, 1) | alone, written)).task_logits
            changes.append(rearrange(out, "(k b) t -> b k t", k=k) - logits.unsqueeze(1))
        return ConceptEffects(logits, *changes)

    def concept_parameters(self) -> list[nn.Parameter]:
        """Parameters of the input-to-concept part (everything but the head)."""
        head = {id(p) for p in self.head.parameters()}
        return [p for p in self.parameters() if id(p) not in head]

    def task_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def residual_parameters(self) -> list[nn.Parameter]:
        """Parameters of a path from the input to the task that bypasses the concepts (PCBM-h's
        residual); none for most models."""
        return []

    def calibrate_interventions(self, train_concept_logits: Tensor) -> None:
        """Learn intervention values from training-set concept logits; most models need none."""

    def concept_objective(self, output: ConceptOutput, c: Tensor, pos_weight: Tensor | None = None, *,
                          y: Tensor | None = None) -> dict[str, Tensor]:
        """A model's own loss terms, by name, added wherever the concept loss is: a ``concept`` term
        replaces the standard concept loss (``training.concept_loss``) and is weighted by the stage's
        concept weight, any other term is added as it is. No terms here: the standard loss alone.

        Args:
            output: The forward pass on the batch.
            c: (B, k) concept labels; NaN where missing.
            pos_weight: (k,) weights of each concept's positive term.
            y: The batch's task labels (for terms that read them, like MixCEM's prior).
        """
        return {}

    def calibrate_concepts(self, inputs: Tensor | Dataset, c: Tensor) -> None:
        """Calibrate the concept probabilities on held-out inputs and labels after training (``fit``
        passes the validation split); most models need none (MixCEM fits Platt scaling here).

        Args:
            inputs: (N, ...) inputs, or a dataset of image items.
            c: (N, k) their concept labels (NaN where missing).
        """

    def on_epoch(self, epoch: int, max_epochs: int) -> None:
        """Called before each training epoch (a schedule of the model's own); most models need none."""

    def check_intervention(self, intervention: Intervention, like: Tensor) -> Intervention:
        """``intervention`` checked against this model and a batch ``like``, on ``like``'s device."""
        if self.n_concepts == 0:
            raise ValueError(f"{type(self).__name__} has no concepts to intervene on")
        expected = (like.shape[0], self.n_concepts)
        if tuple(intervention.mask.shape) != expected:
            raise ValueError(
                f"intervention mask has shape {tuple(intervention.mask.shape)}; "
                f"expected (batch, n_concepts) = {expected}"
            )
        values = intervention.values[:, ~continuous_mask(self.n_concepts, self.continuous, intervention.values.device)]
        if (values < 0).any() or (values > 1).any():
            raise ValueError("intervention values of binary and categorical concepts must be concept labels in [0, 1]; "
                             "pass the true labels (e.g. data.c), not logits or probabilities outside that range")
        return intervention if intervention.mask.device == like.device else intervention.to(like.device)


def _batches(inputs: Tensor | Dataset, batch_size: int, num_workers: int):
    if isinstance(inputs, Tensor):
        return (inputs[start : start + batch_size] for start in range(0, inputs.shape[0], batch_size))
    loader = DataLoader(inputs, batch_size=min(batch_size, 256), shuffle=False, num_workers=num_workers)
    return (x for x, _, _ in loader)


def _merge(parts: list[ConceptOutput]) -> ConceptOutput:
    merged = {}
    for f in fields(ConceptOutput):
        values = [getattr(p, f.name) for p in parts]
        merged[f.name] = None if values[0] is None else torch.cat(values)
    return ConceptOutput(**merged)


@torch.no_grad()
def predict(
    model: ConceptModel,
    inputs: Tensor | Dataset,
    intervention: Intervention | None = None,
    *,
    batch_size: int = 4096,
    num_workers: int = 0,
) -> ConceptOutput:
    """Run ``model`` in evaluation mode over ``inputs`` in batches on the model's device.

    ``inputs`` is a tensor, or a dataset of ``(x, c, y)`` items (images) read in order; row ``i``
    of ``intervention`` applies to item ``i``.

    Args:
        model: The model to run.
        inputs: (N, ...) inputs, or a dataset of image items.
        intervention: Concept corrections, one row per input.
        batch_size: Rows per forward pass.
        num_workers: DataLoader workers when ``inputs`` is a dataset of images.

    Returns:
        The outputs for all inputs, on the CPU.

    Examples:
        >>> from conceptlab.models import Intervention, cbm, predict
        >>> model = cbm(in_features=2, n_concepts=2, n_classes=2)
        >>> x = torch.randn(10, 2)
        >>> corrected = predict(model, x, Intervention.all(torch.ones(10, 2)))  # every concept set to 1
        >>> corrected.bottleneck.unique().tolist()
        [1.0]
    """
    return decode_all(model, encode_all(model, inputs, batch_size, num_workers), intervention, batch_size)


@torch.no_grad()
def encode_all(model: ConceptModel, inputs: Tensor | Dataset, batch_size: int = 4096, num_workers: int = 0) -> Tensor:
    """``model.encode`` over all inputs in evaluation mode, concatenated on the model's device."""
    device = next(model.parameters()).device
    with evaluating(model):
        return torch.cat([model.encode(x.to(device)) for x in _batches(inputs, batch_size, num_workers)])


@torch.no_grad()
def decode_all(
    model: ConceptModel, codes: Tensor, intervention: Intervention | None = None, batch_size: int = 4096
) -> ConceptOutput:
    """``model.decode`` over encoded inputs (from ``encode_all``) with an optional intervention."""
    device = codes.device
    parts = []
    with evaluating(model):
        for start in range(0, codes.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            batch_iv = intervention.slice(sl).to(device) if intervention is not None else None
            parts.append(model.decode(codes[sl], batch_iv))
    return _merge(parts)
