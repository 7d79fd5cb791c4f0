"""IntCEM's training objective (Espinosa Zarlenga et al., NeurIPS 2023): sampled intervention
trajectories, a policy that imitates the greedy oracle, a discounted task loss, a growing horizon.

Everything is batched, and every sample draws its own trajectory: after RandInt, sample i has
``n_free_i`` units left; it gets ``before_i`` random corrections and then a trajectory of ``T_i``
policy-chosen steps, both drawn from what *it* has left (the authors' sampler, applied per
sample). The batch runs ``max_i T_i`` steps with sample i active in its first ``T_i`` of them, so
one sample with nothing left never empties the others' trajectories.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..models.base import Intervention
from ..models.concept_types import concept_probabilities
from ..models.heads import task_loss, true_class_logit
from ..models.intcem import InterventionAwareCEM
from .config import TrainConfig
from .learner import ConceptLearner, Stage
from .losses import concept_loss

MASKED = -1e9  # policy logit of a unit already corrected


def random_pick(free: Tensor, counts: Tensor | int) -> Tensor:
    """(B, G) bool: ``counts`` units (one count, or one per sample (B,)) drawn uniformly among each sample's ``free`` ones."""
    keys = torch.rand(free.shape, device=free.device).masked_fill(~free, -1.0)
    ranks = keys.argsort(dim=1, descending=True).argsort(dim=1)
    counts = torch.as_tensor(counts, device=free.device).reshape(-1, 1)
    return (ranks < counts) & free


def trajectory_lengths(n_free: Tensor, horizon: float, max_horizon: int) -> tuple[Tensor, Tensor]:
    """Per sample, (random corrections made before the trajectory, trajectory length T), both (B,).

    The authors' sampler, drawn for every sample from its own ``n_free`` units: ``before`` is
    uniform on [0, min(h, n_free - 1)) and T uniform on [1, min(h, max_horizon, n_free - before)),
    with h the current horizon limit; a sample with one unit or none left gets T = 0.
    """
    limit = int(horizon)
    n_free = n_free.long()
    bottom = torch.clamp(torch.minimum(n_free - 1, torch.full_like(n_free, limit)), min=0)
    before = (torch.rand(n_free.shape, device=n_free.device) * bottom).floor().long()
    end = torch.minimum(n_free - before, torch.full_like(n_free, min(limit, max_horizon)))
    steps = 1 + (torch.rand(n_free.shape, device=n_free.device) * (end - 1).clamp(min=0)).floor().long()
    return before, torch.where(end > 1, steps, torch.zeros_like(steps))


class IntCEMLearner(ConceptLearner):
    """Trains an ``InterventionAwareCEM``; validation scores the concept and task losses without corrections.

    Per epoch it logs ``trajectory_steps`` (the fraction of training steps in which some sample
    ran a trajectory), ``trajectory_samples`` (the fraction of samples that did) and
    ``policy_loss``, so a run's history shows whether the objective ran.
    """

    epoch_metrics = ("trajectory_steps", "trajectory_samples", "policy_loss")

    def __init__(self, model: InterventionAwareCEM, stage: Stage, config: TrainConfig, *, pos_weight: Tensor | None = None,
                 class_weight: Tensor | None = None):
        if not isinstance(model, InterventionAwareCEM):
            raise ValueError(f"the intcem recipe trains an IntCEM (conceptlab.models.intcem); got {type(model).__name__}")
        super().__init__(model, stage, config, pos_weight=pos_weight, class_weight=class_weight)
        self.horizon = config.intcem.initial_horizon

    def loss_terms(self, batch: tuple[Tensor, Tensor, Tensor], training: bool) -> dict[str, Tensor]:
        """Training: ``concept``, ``policy`` (imitating the oracle) and ``trajectory_task`` terms;
        validation: the plain joint terms, without corrections."""
        if not training:
            return super().loss_terms(batch, training)
        return self.trajectory_terms(batch)[0]

    def training_step(self, batch: tuple[Tensor, Tensor, Tensor], batch_idx: int) -> Tensor:
        terms, steps = self.trajectory_terms(batch)
        loss = sum(terms.values())
        self.accumulate("train_loss", loss, batch[0].shape[0])
        self.accumulate("trajectory_steps", (steps > 0).any().float())
        self.accumulate("trajectory_samples", (steps > 0).float().mean())
        self.accumulate("policy_loss", terms["policy"])
        return loss

    def _randint(self, batch_size: int, n_units: int, device: torch.device) -> Tensor:
        p = self.stage.intervention_prob
        shape = (batch_size, n_units) if self.stage.intervention_per == "sample" else (1, n_units)
        return (torch.rand(shape, device=device) < p).expand(batch_size, -1)

    def trajectory_terms(self, batch: tuple[Tensor, Tensor, Tensor]) -> tuple[dict[str, Tensor], Tensor]:
        """The weighted training loss terms on one batch and every sample's trajectory length T (B,).

        Args:
            batch: ``(x, c, y)``: inputs, concept labels, task labels.
        """
        x, c, y = batch
        model, settings = self.model, self.config.intcem
        units = model.units.to(x.dtype)  # (G, k)
        context = model.encode(x)
        concept_logits = model.concept_logits(context)
        probs = concept_probabilities(concept_logits, model.categorical, model.continuous)
        c = c.to(probs.dtype)

        def corrected(chosen: Tensor) -> Tensor:  # (B, G) units -> (B, k) concepts, differentiable
            return (chosen @ units).clamp(max=1.0)

        def task_logits(chosen: Tensor) -> Tensor:
            mask = corrected(chosen)
            return model.head(rearrange(model.embed(context, probs * (1 - mask) + c * mask), "b k m -> b (k m)"))

        # RandInt corrections first, then a few more at random, then T_i steps chosen by the policy
        randint = self._randint(x.shape[0], units.shape[0], x.device)
        randint_loss = task_loss(task_logits(randint.to(x.dtype)), y, reduction="none", class_weight=self.class_weight)
        before, steps = trajectory_lengths((~randint).sum(1), self.horizon, settings.max_horizon)
        chosen = (randint | random_pick(~randint, before)).to(x.dtype)
        discounts = settings.policy_discount ** torch.arange(int(steps.max()), device=x.device, dtype=x.dtype)
        active = torch.arange(discounts.numel(), device=x.device).unsqueeze(0) < steps.unsqueeze(1)  # (B, max T)
        policy_weight = (discounts * active).sum(1).clamp(min=1.0)  # the sum of a sample's own discounts
        loss_policy = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for step in range(discounts.numel()):
            used = chosen > 0.5
            mask = corrected(chosen)
            scores = model.policy_logits(context, probs * (1 - mask) + c * mask, mask).masked_fill(used, MASKED)
            with torch.no_grad():
                effects = model.concept_effects(context.detach(), Intervention(mask > 0.5, c))
                after = effects.after_each_unit(units, c, mask < 0.5)
                target = true_class_logit(after, y).masked_fill(used, float("-inf")).argmax(1)
            now = active[:, step].to(x.dtype)
            step_loss = F.cross_entropy(scores, target, reduction="none")
            loss_policy = loss_policy + now * discounts[step] * step_loss / policy_weight
            # straight-through Gumbel: the task loss reaches the policy; samples past their T stop
            chosen = chosen + now.unsqueeze(1) * F.gumbel_softmax(scores, tau=1.0, hard=True)
        end_weight = torch.where(steps > 0, settings.task_discount ** steps.to(x.dtype), torch.zeros_like(randint_loss))
        loss_task = randint_loss / (1.0 + end_weight)
        if discounts.numel():
            loss_task = loss_task + end_weight * task_loss(task_logits(chosen), y, reduction="none", class_weight=self.class_weight) / (1.0 + end_weight)
        if self.horizon < units.shape[0] + 1:
            self.horizon *= settings.horizon_rate
        running = steps > 0
        terms = {
            "concept": self.stage.concept_weight * concept_loss(concept_logits, c, self.pos_weight, categorical=model.categorical,
                                                                continuous=model.continuous),
            # the policy term averages over the samples that ran a trajectory, as the authors' batch mean does
            "policy": settings.intervention_weight * loss_policy.sum() / running.sum().clamp(min=1),
            "trajectory_task": settings.trajectory_task_weight * loss_task.mean(),
        }
        return terms, steps
