"""Stochastic Concept Bottleneck Models (Vandenhirtz et al., NeurIPS 2024).

The concept logits are a Gaussian, eta ~ N(mu(x), Sigma(x)), with a full covariance Sigma = L L^T
(``amortized``: L predicted from the input; ``global``: one L learned for all inputs). Concepts
are Bernoulli(sigmoid(eta)); the head is a linear layer on hard concept samples, and the task
probability is its softmax averaged over M samples of eta. Because the concepts share one
Gaussian, correcting some of them moves the others: an intervention fixes the corrected logits
and replaces the rest by their Gaussian conditional,

    mu_R|S = mu_R + Sigma_RS Sigma_SS^-1 (eta_S - mu_S),
    Sigma_R|S = Sigma_RR - Sigma_RS Sigma_SS^-1 Sigma_SR,

where S are the corrected concepts and eta_S the logits written for them: the authors' simple
percentile strategy (logit 0.05 for "absent", logit 0.95 for "present"), or their confidence-region
strategy (the most likely labels' point of the 99 % region of N(mu_S, Sigma_SS),
``confidence_region_logits``).

Training maximises a Monte Carlo estimate of the concepts' likelihood, log (1/M) sum_m p(c | eta_m),
with the task's cross-entropy and an L1 penalty on the off-diagonal precision (Sigma^-1). In
training the hard samples are relaxed Bernoulli draws with a straight-through gradient and a
temperature annealed from 1 to 0.5 over the run. In evaluation the M normal and uniform draws are
fixed buffers (the same for every batch and call), so predictions and intervention curves are
deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import ConceptModel, ConceptOutput, Intervention, check_sizes
from .encoders import encoder, mlp
from .heads import mean_over_samples, task_outputs
from .registry import register_model

Covariance = Literal["amortized", "global"]
COVARIANCES: tuple[str, ...] = ("amortized", "global")
Strategy = Literal["percentile", "confidence"]
STRATEGIES: tuple[str, ...] = ("percentile", "confidence")
"""What an intervention writes into a corrected logit: logit 0.05 / 0.95, or the most likely point
of the confidence region (``confidence_region_logits``)."""
INTERVENTION_PROBABILITIES = (0.05, 0.95)  # the probabilities whose logits an intervention writes (authors' simple_perc)
TEMPERATURES = (1.0, 0.5)  # the relaxed Bernoulli's temperature at the first and the last epoch
HEAD_CHUNK = 10  # Monte Carlo samples the head reads per pass


def gaussian_conditional(mean: Tensor, covariance: Tensor, mask: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """N(mean, covariance) conditioned on the coordinates under ``mask`` equalling ``values``, per
    sample (each row its own set of coordinates).

    The conditioned coordinates come back at their values with zero variance and no covariance;
    the others get the Gaussian conditional. One batched solve serves every mask: with P the
    0/1 diagonal of the mask, M = P Sigma P + (I - P) is Sigma_SS on the conditioned block and
    the identity elsewhere, so Sigma P M^-1 P is Sigma_.S Sigma_SS^-1 padded with zeros.

    Args:
        mean: (B, k) means.
        covariance: (B, k, k) covariances.
        mask: (B, k) booleans: the conditioned coordinates.
        values: (B, k) their values (read where ``mask``).

    Returns:
        ``(mean, covariance)`` of the conditional, (B, k) and (B, k, k).

    Examples:
        >>> from conceptlab.models.scbm import gaussian_conditional
        >>> cov = torch.tensor([[[1.0, 0.8], [0.8, 1.0]]])
        >>> mean, var = gaussian_conditional(torch.zeros(1, 2), cov, torch.tensor([[True, False]]), torch.tensor([[2.0, 0.0]]))
        >>> mean.tolist(), round(var[0, 1, 1].item(), 2)  # 0 + 0.8 / 1 * 2, and 1 - 0.8^2
        ([[2.0, 1.600000023841858]], 0.36)
    """
    chosen = mask.to(covariance.dtype)
    project = torch.diag_embed(chosen)
    blocks = project @ covariance @ project + torch.diag_embed(1 - chosen)
    shift = torch.linalg.solve(blocks, (chosen * (values.to(mean.dtype) - mean)).unsqueeze(-1))
    conditional_mean = mean + (covariance @ (chosen.unsqueeze(-1) * shift)).squeeze(-1)
    gain = torch.linalg.solve(blocks, project @ covariance)  # M^-1 P Sigma
    conditional_covariance = covariance - covariance @ project @ gain
    conditional_mean = torch.where(mask, values.to(mean.dtype), conditional_mean)  # exact, not up to rounding
    return conditional_mean, (conditional_covariance + conditional_covariance.transpose(-1, -2)) / 2


def confidence_region_logits(mean: Tensor, covariance: Tensor, mask: Tensor, labels: Tensor, *, level: float = 0.99,
                             steps: int = 300) -> Tensor:
    """The logits the authors' confidence-region strategy writes for the corrected concepts S: the
    point of the level-``level`` confidence region of N(mu_S, Sigma_SS),

        (eta_S - mu_S)^T Sigma_SS^-1 (eta_S - mu_S) <= chi2_|S|(level),

    where the corrected labels are most likely (least binary cross-entropy). Solved for a whole
    batch at once (a different S per row) by accelerated projected gradient descent in whitened
    coordinates eta_S = mu_S + L_S u, where the region is the ball |u|^2 <= chi2, starting from the
    boundary point along the labels' signs. The authors also bound each logit to move only towards
    its label; that bound is left out here (with it, the solution differs in about 1 row in 200 of a
    random check, ``tests/test_scbm.py``).

    Args:
        mean: (B, k) concept-logit means.
        covariance: (B, k, k) their covariance.
        mask: (B, k) the corrected concepts.
        labels: (B, k) their 0 / 1 labels (read where ``mask``).
        level: The confidence level (the authors' 0.99).
        steps: Projected-gradient steps.

    Returns:
        (B, k) logits: the solution on ``mask``, the means elsewhere.

    Examples:
        >>> from conceptlab.models.scbm import confidence_region_logits
        >>> one = confidence_region_logits(torch.zeros(1, 1), torch.ones(1, 1, 1), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1))
        >>> round(one.item(), 3)  # sqrt(chi2_1(0.99)): the boundary, towards the label
        2.576
    """
    from scipy.stats import chi2

    dtype = torch.float64
    mean, covariance, chosen = mean.to(dtype), covariance.to(dtype), mask.to(dtype)
    radius = torch.as_tensor(chi2.ppf(level, df=mask.sum(1).clamp(min=1).cpu().numpy()), dtype=dtype,
                             device=mean.device).sqrt().unsqueeze(1)
    project = torch.diag_embed(chosen)
    factor = torch.linalg.cholesky(project @ covariance @ project + torch.diag_embed(1 - chosen))  # L_S on S, I elsewhere
    target = labels.to(dtype).nan_to_num(0.0) * chosen

    def onto_ball(u: Tensor) -> Tensor:
        return u * (radius / u.norm(dim=1, keepdim=True).clamp(min=1e-12)).clamp(max=1.0)

    def gradient(u: Tensor) -> Tensor:
        logits = mean + (factor @ u.unsqueeze(-1)).squeeze(-1)
        return (factor.transpose(1, 2) @ ((torch.sigmoid(logits) - target) * chosen).unsqueeze(-1)).squeeze(-1)

    start = torch.linalg.solve_triangular(factor, ((2 * target - 1) * chosen).unsqueeze(-1), upper=False).squeeze(-1)
    u = previous = onto_ball(start * 1e6)  # the boundary point along the labels' signs
    step = 4.0 / (factor * chosen.unsqueeze(-1)).pow(2).sum((1, 2)).clamp(min=1e-12).unsqueeze(1)  # 1 / a Lipschitz bound
    for n in range(1, steps + 1):  # FISTA: a gradient step from the extrapolated point, then the projection
        ahead = u + (n - 1) / (n + 2) * (u - previous)
        previous, u = u, onto_ball((ahead - step * gradient(ahead)) * chosen)
    return torch.where(mask, mean + (factor @ u.unsqueeze(-1)).squeeze(-1), mean)


class StochasticConceptBottleneckModel(ConceptModel):
    """x -> latent code -> concept-logit Gaussian N(mu, L L^T) -> M hard concept samples -> linear head.

    ``encode`` returns the latent code; ``decode`` builds the Gaussian, conditions it on an
    intervention, draws M logit samples and averages the head's class probabilities over them.
    ``concept_logits`` are the means mu (after conditioning: the conditional means),
    ``concept_probs`` the mean of sigmoid(eta) over samples (1 / 0 where corrected), the
    ``bottleneck`` the mean hard concept, ``concept_samples`` the (B, k, M) logit samples the
    concept likelihood is computed from, ``concept_scale`` a square root A of the logits'
    covariance, A A^T (the Cholesky factor L before an intervention, zero rows for the corrected
    concepts after one), and ``concept_uncertainty`` the logits' marginal variances, diag(A A^T).

    Args:
        encoder: The network from inputs to the latent code.
        latent_dim: Width of the latent code.
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        covariance: ``amortized`` (L from the input) or ``global`` (one L).
        samples: M, the Monte Carlo samples per input.
        precision_weight: Weight of the L1 penalty on the off-diagonal precision.
        head_hidden: Widths of the head's hidden ReLU layers (none: the authors' default linear head;
            ``(256,)``: their ``nonlinear`` head, which a task like XOR of hard concepts needs).
        intervention_strategy: ``percentile`` (logit 0.05 / 0.95, the authors' ``simple_perc``) or
            ``confidence`` (their ``conf_interval_optimal``, at ``confidence_level``).
        confidence_level: The confidence region's level for the ``confidence`` strategy.

    Examples:
        >>> from conceptlab.models import StochasticConceptBottleneckModel
        >>> model = StochasticConceptBottleneckModel(torch.nn.Linear(4, 8), latent_dim=8, n_concepts=3, n_classes=2, samples=10)
        >>> model.eval()(torch.randn(2, 4)).concept_samples.shape
        torch.Size([2, 3, 10])
    """

    reports_uncertainty = True

    def __init__(
        self,
        encoder: nn.Module,
        *,
        latent_dim: int,
        n_concepts: int,
        n_classes: int,
        covariance: Covariance = "amortized",
        samples: int = 100,
        precision_weight: float = 1.0,
        head_hidden: Sequence[int] = (),
        intervention_strategy: Strategy = "percentile",
        confidence_level: float = 0.99,
    ):
        super().__init__()
        if covariance not in COVARIANCES:
            raise ValueError(f"unknown covariance {covariance!r}; choose one of {', '.join(COVARIANCES)}")
        if intervention_strategy not in STRATEGIES:
            raise ValueError(f"unknown intervention strategy {intervention_strategy!r}; choose one of {', '.join(STRATEGIES)}")
        if not 0 < confidence_level < 1:
            raise ValueError(f"confidence_level must lie in (0, 1); got {confidence_level}")
        self.intervention_strategy = intervention_strategy
        self.confidence_level = confidence_level
        check_sizes(n_concepts=n_concepts, samples=samples)
        self.encoder = encoder
        self.n_concepts = n_concepts
        self.n_classes = n_classes
        self.samples = samples
        self.precision_weight = precision_weight
        self.mean = nn.Linear(latent_dim, n_concepts)
        n_scale = n_concepts * (n_concepts + 1) // 2
        if covariance == "amortized":
            self.scale = nn.Linear(latent_dim, n_scale)
            with torch.no_grad():
                self.scale.weight.mul_(0.01)  # a near-constant precision at the start (the authors' initialisation)
        else:
            self.scale = nn.Parameter(torch.zeros(n_scale))
        self.covariance_kind = covariance
        self.head = mlp(n_concepts, task_outputs(n_classes), head_hidden, activation=nn.ReLU)
        draws = torch.Generator().manual_seed(0)
        self.register_buffer("normal_draws", torch.randn(samples, n_concepts, generator=draws))  # evaluation: fixed
        self.register_buffer("uniform_draws", torch.rand(samples, n_concepts, generator=draws))
        self.temperature = TEMPERATURES[0]

    def encode(self, x: Tensor) -> Tensor:
        """The latent code (B, latent_dim)."""
        return self.encoder(x)

    def gaussian(self, latent: Tensor) -> tuple[Tensor, Tensor]:
        """The concept-logit mean (B, k) and Cholesky factor L (B, k, k) with a positive diagonal."""
        k = self.n_concepts
        values = self.scale(latent) if isinstance(self.scale, nn.Linear) else self.scale.expand(latent.shape[0], -1)
        rows, cols = torch.tril_indices(k, k, device=latent.device)
        factor = latent.new_zeros(latent.shape[0], k, k)
        factor[:, rows, cols] = values
        diagonal = torch.arange(k, device=latent.device)
        factor[:, diagonal, diagonal] = F.softplus(values[:, rows == cols]) + 1e-6
        return self.mean(latent), factor

    def decode(self, latent: Tensor, intervention: Intervention | None = None) -> ConceptOutput:
        mean, factor = self.gaussian(latent)
        corrected = None
        if intervention is not None:
            if self.training:
                raise ValueError("an SCBM trains without training-time interventions (its authors' recipe has no "
                                 "RandInt): set train.intervention_prob to 0")
            intervention = self.check_intervention(intervention, latent)
            corrected = intervention.mask
            covariance = (factor @ factor.transpose(-1, -2)).double()
            if self.intervention_strategy == "confidence":
                written = confidence_region_logits(mean, covariance, corrected, intervention.values, level=self.confidence_level)
            else:
                low, high = (math.log(p / (1 - p)) for p in INTERVENTION_PROBABILITIES)
                written = torch.where(intervention.values > 0.5, high, low)
            conditional_mean, covariance = gaussian_conditional(mean.double(), covariance, corrected, written.double())
            # a square root of the conditional covariance (zero rows for the corrected concepts): eigh, because
            # rounding can leave the conditional a hair from positive definite, where a Cholesky factor fails
            values, vectors = torch.linalg.eigh(covariance)
            root = (vectors * values.clamp(min=0).sqrt().unsqueeze(-2)).to(mean.dtype)
            # a row with nothing corrected keeps its Cholesky factor: the same draws as without an intervention
            factor = torch.where(corrected.any(1).view(-1, 1, 1), root, factor)
            mean = conditional_mean.to(mean.dtype)
        noise = torch.randn(latent.shape[0], self.samples, self.n_concepts, device=latent.device, dtype=mean.dtype) \
            if self.training else self.normal_draws.to(mean.dtype).expand(latent.shape[0], -1, -1)
        logits = mean.unsqueeze(-1) + factor @ noise.transpose(1, 2)  # (B, k, M)
        if corrected is not None:
            logits = torch.where(corrected.unsqueeze(-1), mean.unsqueeze(-1), logits)
        probs = torch.sigmoid(logits)
        hard = self._hard(probs)
        if corrected is not None:
            truth = intervention.values.to(probs.dtype).unsqueeze(-1)
            probs = torch.where(corrected.unsqueeze(-1), truth, probs)
            hard = torch.where(corrected.unsqueeze(-1), truth, hard)
        return ConceptOutput(self._task_logits(hard), hard.mean(-1), mean, probs.mean(-1), concept_samples=logits,
                             concept_scale=factor, concept_uncertainty=factor.square().sum(-1))

    def _task_logits(self, hard: Tensor) -> Tensor:
        """The head's class distribution averaged over the M samples (B, k, M), as task logits
        (``heads.mean_over_samples``). The head runs on chunks of samples, whose activations stay
        small enough for the CPU's cache (a third faster than one pass over all M)."""
        samples = hard.transpose(1, 2)  # (B, M, k)
        parts = [self.head(samples[:, start : start + HEAD_CHUNK]) for start in range(0, self.samples, HEAD_CHUNK)]
        return mean_over_samples(torch.cat(parts, dim=1))

    def _hard(self, probs: Tensor) -> Tensor:
        """Hard 0/1 samples of Bernoulli(probs): straight-through relaxed draws in training,
        thresholds of the fixed uniform draws in evaluation."""
        if not self.training:
            return (self.uniform_draws.T.to(probs.dtype) < probs).to(probs.dtype)
        relaxed = torch.distributions.RelaxedBernoulli(torch.tensor(self.temperature, device=probs.device), probs=probs.clamp(1e-6, 1 - 1e-6)).rsample()
        return (relaxed > 0.5).to(probs.dtype) - relaxed.detach() + relaxed

    def concept_objective(self, output: ConceptOutput, c: Tensor, pos_weight: Tensor | None = None, *,
                          y: Tensor | None = None) -> dict[str, Tensor]:
        """``concept``: -log (1/M) sum_m p(c | eta_m), averaged over the batch (missing labels add no
        term); ``precision``: the weighted mean absolute off-diagonal precision."""
        logits = output.concept_samples
        c = c.to(logits.dtype)
        known = (~torch.isnan(c)).unsqueeze(-1)
        log_likelihood = -(F.binary_cross_entropy_with_logits(logits, c.nan_to_num(0.0).unsqueeze(-1).expand_as(logits),
                                                              reduction="none") * known).sum(1)  # (B, M)
        terms = {"concept": -(torch.logsumexp(log_likelihood, 1) - math.log(self.samples)).mean()}
        if self.precision_weight and self.n_concepts > 1:
            factor = output.concept_scale  # lower triangular in training (no interventions there)
            eye = torch.eye(self.n_concepts, device=factor.device, dtype=factor.dtype).expand_as(factor)
            inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
            precision = inverse.transpose(-1, -2) @ inverse
            off_diagonal = precision.abs().sum((1, 2)) - precision.diagonal(dim1=1, dim2=2).abs().sum(-1)
            terms["precision"] = self.precision_weight * (off_diagonal / (self.n_concepts * (self.n_concepts - 1))).mean()
        return terms

    def on_epoch(self, epoch: int, max_epochs: int) -> None:
        """Anneal the relaxed Bernoulli's temperature exponentially from 1 to 0.5 over ``max_epochs``."""
        start, end = TEMPERATURES
        self.temperature = max(start * math.exp(math.log(end / start) * epoch / max(max_epochs, 1)), end)


@register_model(not_saved=("backbone_weights",))
def scbm(
    *,
    in_features: int,
    n_concepts: int,
    n_classes: int,
    latent_dim: int = 128,
    hidden: Sequence[int] = (128, 128),
    covariance: Covariance = "amortized",
    samples: int = 100,
    precision_weight: float = 1.0,
    head_hidden: Sequence[int] = (),
    intervention_strategy: Strategy = "percentile",
    confidence_level: float = 0.99,
    backbone: str | None = None,
    backbone_weights: str | None = None,
) -> StochasticConceptBottleneckModel:
    """An SCBM with an MLP encoder (optionally on an image backbone).

    Args:
        in_features: Width of the input vectors (ignored with ``backbone``).
        n_concepts: Number of concepts k.
        n_classes: Number of task classes (2: one binary logit).
        latent_dim: Width of the latent code the concept Gaussian is computed from.
        hidden: Widths of the MLP encoder's hidden layers.
        covariance: ``amortized`` (a covariance per input) or ``global`` (one for all inputs).
        samples: M, the Monte Carlo samples of the concept logits.
        precision_weight: Weight of the L1 penalty on the off-diagonal precision (the authors' 1).
        head_hidden: Widths of the head's hidden ReLU layers (none: linear, the authors' default).
        intervention_strategy: ``percentile`` (logit 0.05 / 0.95) or ``confidence`` (the most likely
            point of the confidence region, the authors' ``conf_interval_optimal``).
        confidence_level: The confidence region's level (the authors' 0.99).
        backbone: An image backbone name under the MLP, for training on images.
        backbone_weights: A local file of the backbone's pretrained weights.

    Returns:
        The untrained model; ``build_spec`` records the call.

    Raises:
        ValueError: A size that is not a whole number >= 1, or an unknown covariance.

    Examples:
        >>> from conceptlab.models import scbm
        >>> model = scbm(in_features=4, n_concepts=3, n_classes=2, latent_dim=8, hidden=(8,), samples=10)
        >>> model.eval()(torch.randn(5, 4)).concept_probs.shape
        torch.Size([5, 3])
    """
    check_sizes(n_concepts=n_concepts, n_classes=n_classes, latent_dim=latent_dim)
    return StochasticConceptBottleneckModel(
        encoder(in_features, latent_dim, hidden, backbone, backbone_weights), latent_dim=latent_dim, n_concepts=n_concepts,
        n_classes=n_classes, covariance=covariance, samples=samples, precision_weight=precision_weight,
        head_hidden=head_hidden, intervention_strategy=intervention_strategy, confidence_level=confidence_level,
    )
