"""Post-hoc Concept Bottleneck Models (Yuksekgonul, Wang and Zou, ICLR 2023).

A frozen embedding ``z`` is projected onto a bank of concept hyperplanes (one linear SVM per
concept, e.g. a :class:`~conceptlab.concepts.CAVBank`): concept ``i`` reads the signed distance
``(w_i . z + b_i) / ||w_i||``. A sparse linear head maps these distances to the task (PCBM); the
hybrid PCBM-h adds a linear residual on the embedding itself. The bank is frozen: training fits
the head (and the residual), nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from .base import ConceptEffects, ConceptModel, ConceptOutput, Intervention, check_sizes
from .cbm import store_percentiles
from .heads import task_outputs
from .registry import register_model


class ConceptBankLike(Protocol):
    """What a PCBM reads from a concept bank: one hyperplane per concept, ``directions_`` (k, D)
    of unit norm, ``intercepts_`` (k) in the same units, and the SVM weight norms ``norms_`` (k)."""

    directions_: Tensor
    intercepts_: Tensor
    norms_: Tensor


@dataclass(frozen=True)
class UnfittedBank:
    """A placeholder bank of the right shape (NaN): a PCBM rebuilt from a file gets its bank
    from the saved state, and the bench gives one to it before training."""

    in_features: int
    n_concepts: int

    @property
    def directions_(self) -> Tensor:
        return torch.full((self.n_concepts, self.in_features), float("nan"))

    @property
    def intercepts_(self) -> Tensor:
        return torch.full((self.n_concepts,), float("nan"))

    @property
    def norms_(self) -> Tensor:
        return torch.full((self.n_concepts,), float("nan"))


class PosthocCBM(ConceptModel):
    """embedding -> signed distances to the bank's concept hyperplanes -> sparse linear head [+ residual].

    ``concept_logits`` are the SVM decision values ``w_i . z + b_i`` (so ``concept_probs`` read the
    margin: 0.73 on a support vector), the bottleneck carries the distances. An intervention
    writes a concept's 5th / 95th percentile of training distances (as a logit CBM does), so that
    "absent" and "present" are values the head saw during training. The residual (``hybrid``)
    starts at zero and is never intervened on.

    Args:
        bank: The concept bank (a fitted ``CAVBank``, or a placeholder filled by ``set_bank``).
        n_classes: Number of task classes (2: one binary logit).
        hybrid: Add PCBM-h's linear residual from the embedding to the logits.

    Examples:
        >>> from conceptlab.concepts import bank_from_labels
        >>> from conceptlab.models import PosthocCBM
        >>> z, c = torch.randn(200, 6), (torch.rand(200, 2) > 0.5).float()
        >>> model = PosthocCBM(bank_from_labels(z, c, ["a", "b"], examples=40), n_classes=3)
        >>> model(z[:4]).concept_logits.shape
        torch.Size([4, 2])
    """

    additive_effects = True  # a linear head on the concepts, and a residual no concept touches

    def __init__(self, bank: ConceptBankLike, n_classes: int, hybrid: bool = False):
        super().__init__()
        directions = torch.as_tensor(bank.directions_).detach().float()
        if directions.ndim != 2 or directions.shape[0] < 1:
            raise ValueError(f"the concept bank needs directions_ of shape (n_concepts, n_features); got {tuple(directions.shape)}")
        self.n_concepts, self.in_features = directions.shape
        self.n_classes = n_classes
        self.hybrid = hybrid
        self.register_buffer("directions", torch.empty_like(directions))
        self.register_buffer("intercepts", torch.empty(self.n_concepts))
        self.register_buffer("norms", torch.empty(self.n_concepts))
        self.register_buffer("intervention_low", torch.full((self.n_concepts,), float("nan")))
        self.register_buffer("intervention_high", torch.full((self.n_concepts,), float("nan")))
        self.register_buffer("distance_mean", torch.zeros(self.n_concepts))  # training mean: what a pruned concept leaves
        self.set_bank(bank)
        self.head = nn.Linear(self.n_concepts, task_outputs(n_classes))
        self.residual = nn.Linear(self.in_features, task_outputs(n_classes)) if hybrid else None
        for layer in (self.head, self.residual):
            if layer is not None:
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

    def set_bank(self, bank: ConceptBankLike) -> None:
        """Copy ``bank``'s hyperplanes in (same number of concepts and embedding width)."""
        directions = torch.as_tensor(bank.directions_).detach().float()
        intercepts = torch.as_tensor(bank.intercepts_).detach().float().reshape(-1)
        norms = torch.as_tensor(bank.norms_).detach().float().reshape(-1)
        if directions.shape != self.directions.shape or intercepts.numel() != self.n_concepts or norms.numel() != self.n_concepts:
            raise ValueError(f"the bank has {directions.shape[0]} concepts of width {directions.shape[-1]} (and "
                             f"{intercepts.numel()} intercepts, {norms.numel()} norms); this PCBM expects "
                             f"{self.n_concepts} concepts of width {self.in_features}")
        self.directions.copy_(directions)
        self.intercepts.copy_(intercepts)
        self.norms.copy_(norms)

    @property
    def bank_fitted(self) -> bool:
        return bool(torch.isfinite(self.directions).all() and torch.isfinite(self.intercepts).all())

    def encode(self, x: Tensor) -> Tensor:
        """The embedding, flattened to (B, D); inputs are the backbone's embeddings, not images."""
        z = x.flatten(1)
        if z.shape[1] != self.in_features:
            raise ValueError(f"this PCBM reads embeddings of {self.in_features} features; got inputs of shape "
                             f"{tuple(x.shape)}. Feed the backbone's embeddings (the layer the bank was fitted on)")
        if not self.bank_fitted:
            raise ValueError("this PCBM has no concept bank yet: build it with pcbm(..., bank=bank) or call set_bank(bank)")
        return z

    def distances(self, z: Tensor) -> Tensor:
        """Signed distances (B, k) of embeddings to each concept's hyperplane."""
        return z.to(self.directions.dtype) @ self.directions.T + self.intercepts

    def decode(self, z: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        distances = self.distances(z)
        logits = distances * self.norms
        concepts = distances
        if intervention is not None:
            intervention = self.check_intervention(intervention, distances)
            low, high = self._intervention_values()
            concepts = torch.where(intervention.mask, torch.where(intervention.values.to(distances.dtype) > 0.5, high, low),
                                   distances)
        task = self.head(concepts)
        if self.residual is not None:
            task = task + self.residual(z.to(self.directions.dtype))
        return ConceptOutput(task, concepts, logits, torch.sigmoid(logits))

    def _intervention_values(self) -> tuple[Tensor, Tensor]:
        if torch.isnan(self.intervention_low).any():
            raise ValueError("a PCBM needs its training-distance percentiles before intervening: train it with "
                             "conceptlab.training.fit(model, splits, 'posthoc') or call model.calibrate_interventions(...)")
        return self.intervention_low, self.intervention_high

    def concept_effects(self, z: Tensor, intervention: Intervention | None = None) -> ConceptEffects:
        """Closed form, as for any head linear in the concepts."""
        out = self.decode(z, intervention)
        low, high = self._intervention_values()
        return ConceptEffects.of_linear_head(out.task_logits, out.bottleneck, low, high, self.head.weight.T)

    def calibrate_interventions(self, train_concept_logits: Tensor) -> None:
        """Store the 5th / 95th percentiles and the mean of each concept's training distances."""
        distances = train_concept_logits.detach().float().to(self.norms.device) / self.norms
        store_percentiles(distances, self.intervention_low, self.intervention_high)
        self.distance_mean.copy_(distances.mean(0))

    def concept_parameters(self) -> list[nn.Parameter]:
        """None: the bank is fixed (buffers)."""
        return []

    def residual_parameters(self) -> list[nn.Parameter]:
        return list(self.residual.parameters()) if self.residual is not None else []


@register_model(not_saved=("bank",))
def pcbm(
    *, in_features: int, n_concepts: int, n_classes: int, hybrid: bool = False, bank: ConceptBankLike | None = None
) -> PosthocCBM:
    """A PCBM (``hybrid``: PCBM-h) on ``bank``, or on a bank still to be set (``set_bank``) or loaded from a file.

    Args:
        in_features: Width of the embeddings the bank's CAVs live in.
        n_concepts: Number of concepts in the bank.
        n_classes: Number of task classes (2: one binary logit).
        hybrid: Add PCBM-h's linear residual from the embedding to the logits.
        bank: A fitted concept bank (e.g. a ``CAVBank``) of ``n_concepts`` directions of width ``in_features``;
            None leaves a placeholder (NaN) for ``set_bank`` or a saved state.

    Examples:
        >>> from conceptlab.models import pcbm
        >>> model = pcbm(in_features=8, n_concepts=3, n_classes=2)
        >>> model.bank_fitted
        False

    Returns:
        The PCBM; ``build_spec`` records the call without the bank (its hyperplanes are saved weights).
    """
    check_sizes(in_features=in_features, n_concepts=n_concepts, n_classes=n_classes)
    model = PosthocCBM(UnfittedBank(in_features, n_concepts), n_classes, hybrid)
    if bank is not None:
        model.set_bank(bank)
    return model
