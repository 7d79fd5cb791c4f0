"""IntCEM's training objective (Espinosa Zarlenga et al., NeurIPS 2023): sampled intervention
trajectories, a policy that imitates the greedy oracle, a discounted task loss, a growing horizon.

Everything is batched: one trajectory length T per batch, every sample's corrections drawn at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from ..models.intcem import InterventionAwareCEM
from ..models.interventions import Intervention
from .config import TrainConfig
from .learner import ConceptLearner, Stage
from .losses import concept_loss, task_loss

MASKED = -1e9  # policy logit of a unit already corrected


def true_class_logit(logits: Tensor, y: Tensor) -> Tensor:
    """(..., T) task logits -> the logit (log-odds for one binary logit) of the true class, (...)."""
    if logits.shape[-1] == 1:
        sign = (2 * y.to(logits.dtype) - 1).view(-1, *([1] * (logits.ndim - 2)))
        return sign * logits.squeeze(-1)
    index = y.long().view(-1, *([1] * (logits.ndim - 1))).expand(*logits.shape[:-1], 1)
    return logits.gather(-1, index).squeeze(-1)


def random_pick(free: Tensor, counts: int) -> Tensor:
    """(B, G) bool: ``counts`` units drawn uniformly among each sample's ``free`` ones."""
    keys = torch.rand(free.shape, device=free.device).masked_fill(~free, -1.0)
    ranks = keys.argsort(dim=1, descending=True).argsort(dim=1)
    return (ranks < counts) & free


class IntCEMLearner(ConceptLearner):
    """Trains an ``InterventionAwareCEM``; validation scores the concept and task losses without corrections."""

    def __init__(self, model: InterventionAwareCEM, stage: Stage, config: TrainConfig, pos_weight: Tensor | None = None):
        if not isinstance(model, InterventionAwareCEM):
            raise ValueError(f"the intcem recipe trains an IntCEM (conceptlab.models.intcem); got {type(model).__name__}")
        super().__init__(model, stage, config, pos_weight)
        self.horizon = config.intcem.initial_horizon

    def _loss(self, batch: tuple[Tensor, Tensor, Tensor], training: bool) -> Tensor:
        if not training:  # the plain joint loss: no correction at validation
            return super()._loss(batch, training)
        return self._trajectory_loss(batch)

    def _trajectory_length(self, n_free: int) -> tuple[int, int]:
        """(corrections made before the trajectory, trajectory length T), as in the authors' sampler."""
        limit = int(self.horizon)
        if n_free <= 0:
            return 0, 0
        bottom = min(limit, n_free - 1)
        before = int(torch.randint(0, bottom, ()).item()) if bottom > 0 else 0
        end = min(limit, self.config.intcem.max_horizon, n_free - before)
        return before, int(torch.randint(1, end, ()).item()) if end > 1 else 0

    def _trajectory_loss(self, batch: tuple[Tensor, Tensor, Tensor]) -> Tensor:
        x, c, y = batch
        model, settings = self.model, self.config.intcem
        units = model.units.to(x.dtype)  # (G, k)
        context = model.encode(x)
        concept_logits = model.concept_logits(context)
        probs = torch.sigmoid(concept_logits)
        c = c.to(probs.dtype)

        def corrected(chosen: Tensor) -> Tensor:  # (B, G) units -> (B, k) concepts, differentiable
            return (chosen @ units).clamp(max=1.0)

        def task_logits(chosen: Tensor) -> Tensor:
            mask = corrected(chosen)
            return model.head(rearrange(model.embed(context, probs * (1 - mask) + c * mask), "b k m -> b (k m)"))

        # RandInt corrections first, then a few more at random, then T steps chosen by the policy
        p = self.stage.intervention_prob
        shape = (x.shape[0], units.shape[0]) if self.stage.intervention_per == "sample" else (1, units.shape[0])
        chosen = (torch.rand(shape, device=x.device) < p).expand(x.shape[0], -1).to(x.dtype)
        randint_loss = task_loss(task_logits(chosen), y)
        before, steps = self._trajectory_length(int((chosen == 0).sum(1).min()))
        chosen = chosen + random_pick(chosen == 0, before).to(x.dtype)
        policy_weight = sum(settings.policy_discount ** i for i in range(steps)) or 1.0
        task_weight = 1.0 + (settings.task_discount ** steps if steps else 0.0)
        loss_task = randint_loss / task_weight
        loss_policy = torch.zeros((), device=x.device)
        for step in range(steps):
            used = chosen > 0.5
            mask = corrected(chosen)
            scores = model.policy_logits(context, probs * (1 - mask) + c * mask, mask).masked_fill(used, MASKED)
            with torch.no_grad():
                effects = model.concept_effects(context.detach(), Intervention(mask > 0.5, c))
                after = effects.after_each_unit(units, c, mask < 0.5)
                target = true_class_logit(after, y).masked_fill(used, float("-inf")).argmax(1)
            loss_policy = loss_policy + settings.policy_discount ** step * F.cross_entropy(scores, target) / policy_weight
            chosen = chosen + F.gumbel_softmax(scores, tau=1.0, hard=True)  # straight-through: the task loss reaches the policy
        if steps:
            loss_task = loss_task + settings.task_discount ** steps * task_loss(task_logits(chosen), y) / task_weight
        if self.horizon < units.shape[0] + 1:
            self.horizon *= settings.horizon_rate
        loss = self.stage.concept_weight * concept_loss(concept_logits, c, self.pos_weight)
        return loss + settings.intervention_weight * loss_policy + settings.trajectory_task_weight * loss_task
