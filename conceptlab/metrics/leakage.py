"""How much a concept representation says beyond its concept: leakage, causal effects, sparse heads.

- **Concepts-task leakage** (CTL): I(R; Y | C), the information the concept representations R
  carry about the task label beyond the true concepts C (information-theoretic leakage in the
  sense of Parisini et al., 2025; estimated by k nearest neighbours within each concept pattern).
- **Inter-concept leakage** (ICL): for every pair, I(r_i; c_j | c_i), what concept i's own
  representation says about concept j beyond concept i itself; the score is the mean over i != j.
- **Linear-probe leakage**: held-out accuracy a logistic probe gains on the task when R is added
  to the true concepts (each concept pattern one-hot, so that any function of C is linear in it).
- **CaCE** (Goyal et al., 2019): the causal effect of a concept on each class probability,
  E[p(y | do(c_i = 1))] - E[p(y | do(c_i = 0))], computed with the model's own interventions.
- **Accuracy at a number of effective concepts** (NEC; Srivastava et al., 2024): a linear head
  over concepts pruned to its ``nec`` largest weights per output.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..models import heads
from ..models.base import ConceptModel, Intervention, decode_all, encode_all
from .information import ConditionalInformation, conditional_mutual_information
from .labels import check_binary_labels


def _representation_matrix(representations: Tensor) -> Tensor:
    if representations.ndim == 3:
        return representations.flatten(1)
    if representations.ndim != 2:
        raise ValueError(f"representations must be (N, k, d) or (N, D); got shape {tuple(representations.shape)}")
    return representations


def concepts_task_leakage(representations: Tensor, c: Tensor, y: Tensor, *, k: int = 3,
                          seed: int = 0) -> ConditionalInformation:
    """Concepts-task leakage I(R; Y | C) in nats: task information in R beyond the true concepts.

    Args:
        representations: (N, k, d) each concept's representation (``own_representations``) or (N, D).
        c: (N, k) 0/1 concept labels; each distinct row (concept pattern) is one stratum.
        y: (N,) task labels.
        k: Neighbours of the estimator.
        seed: Seeds its tie-breaking jitter.

    Returns:
        The estimate and the share of samples in patterns large enough to estimate within.

    Raises:
        ValueError: Non-binary concept labels, or no concept pattern with enough samples (many
            concepts: every pattern is rare; condition on fewer concepts).

    Examples:
        >>> from conceptlab.metrics import concepts_task_leakage
        >>> g = torch.Generator().manual_seed(0)
        >>> c = torch.randint(0, 2, (2000, 2), generator=g).float()
        >>> y = torch.randint(0, 2, (2000,), generator=g)
        >>> leaky = c + 0.3 * torch.randn(2000, 2, generator=g) + y[:, None]  # y written into R
        >>> clean = c + 0.3 * torch.randn(2000, 2, generator=g)
        >>> concepts_task_leakage(leaky, c, y).value > concepts_task_leakage(clean, c, y).value + 0.2
        True
    """
    check_binary_labels(c, "concepts-task leakage")
    return conditional_mutual_information(_representation_matrix(representations), y, c, discrete_y=True, k=k, seed=seed)


def interconcept_leakage(representations: Tensor, c: Tensor, *, k: int = 3, seed: int = 0) -> Tensor:
    """(k, k) inter-concept leakage: entry (i, j) is I(r_i; c_j | c_i) in nats (NaN on the diagonal).

    Its mean over i != j (``torch.nanmean``) is the inter-concept leakage score.

    Args:
        representations: (N, k, d) each concept's own representation (``own_representations``).
        c: (N, k) 0/1 concept labels.
        k: Neighbours of the estimator.
        seed: Seeds its tie-breaking jitter.

    Returns:
        (k, k) nats.

    Examples:
        >>> from conceptlab.metrics import interconcept_leakage
        >>> g = torch.Generator().manual_seed(0)
        >>> c = torch.randint(0, 2, (2000, 2), generator=g).float()
        >>> r = (c + 0.3 * torch.randn(2000, 2, generator=g)).unsqueeze(-1)
        >>> bool(interconcept_leakage(r, c).nan_to_num().max() < 0.02)  # each unit knows only its concept
        True
    """
    if representations.ndim != 3 or representations.shape[:2] != c.shape:
        raise ValueError(f"need representations (N, k, d) and concepts (N, k); got {tuple(representations.shape)} and "
                         f"{tuple(c.shape)}")
    check_binary_labels(c, "inter-concept leakage")
    n = c.shape[1]
    matrix = torch.full((n, n), float("nan"))
    for i in range(n):
        for j in range(n):
            if i != j:
                matrix[i, j] = conditional_mutual_information(representations[:, i], c[:, j], c[:, i], discrete_y=True,
                                                              k=k, seed=seed).value
    return matrix


def _pattern_one_hot(c: np.ndarray) -> np.ndarray:
    _, codes = np.unique(c, axis=0, return_inverse=True)
    return np.eye(codes.max() + 1)[codes.reshape(-1)]


def probe_leakage(representations: Tensor, c: Tensor, y: Tensor, *, test_fraction: float = 0.33, seed: int = 0,
                  max_patterns: int = 256) -> float:
    """Held-out task accuracy a linear probe gains from R beyond the true concepts.

    Two logistic regressions predict ``y``: one from the one-hot concept pattern (any function of
    the concepts is linear in it), one from the pattern and the standardised representations.
    The difference of their held-out accuracies is the leakage (0: R adds nothing a concept-only
    head could not have known).

    Args:
        representations: (N, k, d) or (N, D) concept representations.
        c: (N, k) 0/1 concept labels.
        y: (N,) task labels.
        test_fraction: Share of rows held out.
        seed: Draws the held-out rows.
        max_patterns: Most distinct concept patterns one-hot coded; beyond it the raw concepts are used.

    Returns:
        The accuracy gain, in [-1, 1].

    Examples:
        >>> from conceptlab.metrics import probe_leakage
        >>> g = torch.Generator().manual_seed(0)
        >>> c = torch.randint(0, 2, (1000, 2), generator=g).float()
        >>> y = torch.randint(0, 2, (1000,), generator=g)
        >>> probe_leakage(c + y[:, None].float(), c, y) > 0.4  # y written into R
        True
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    check_binary_labels(c, "probe leakage")
    r = _representation_matrix(representations).detach().double().cpu().numpy()
    cs, labels = c.detach().cpu().numpy(), y.detach().cpu().numpy().reshape(-1)
    if not len(r) == len(cs) == len(labels):
        raise ValueError(f"representations, concepts and labels must hold the same samples; got {len(r)}, {len(cs)}, "
                         f"{len(labels)}")
    base = _pattern_one_hot(cs) if len(np.unique(cs, axis=0)) <= max_patterns else cs
    order = np.random.default_rng(seed).permutation(len(labels))
    n_test = max(1, int(round(test_fraction * len(labels))))
    test, train = order[:n_test], order[n_test:]
    scaled = StandardScaler().fit(r[train]).transform(r)
    scores = []
    for features in (base, np.hstack([base, scaled])):
        probe = LogisticRegression(max_iter=2000).fit(features[train], labels[train])
        scores.append(float((probe.predict(features[test]) == labels[test]).mean()))
    return scores[1] - scores[0]


def causal_concept_effect(model: ConceptModel, inputs: Tensor, *, batch_size: int = 4096) -> Tensor:
    """(k, T) CaCE: the mean change of each class probability when concept i is set to 1 rather than 0.

    Uses the model's own interventions (do(c_i = 1) and do(c_i = 0) for every input), so it
    measures the effect the model gives a concept, whatever the data's correlations.

    Args:
        model: A concept model.
        inputs: (N, ...) inputs.
        batch_size: Rows per pass.

    Returns:
        (n_concepts, n_classes) differences of mean class probabilities, in [-1, 1].

    Examples:
        >>> from conceptlab.metrics import causal_concept_effect
        >>> from conceptlab.models import cbm
        >>> causal_concept_effect(cbm(in_features=3, n_concepts=2, n_classes=4), torch.randn(8, 3)).shape
        torch.Size([2, 4])
    """
    codes = encode_all(model, inputs, batch_size)
    n, n_concepts = codes.shape[0], model.n_concepts
    rows = []
    for i in range(n_concepts):
        mask = torch.zeros(n, n_concepts, dtype=torch.bool, device=codes.device)
        mask[:, i] = True
        means = [heads.class_log_probs(decode_all(model, codes, Intervention(mask, torch.full_like(mask, value, dtype=torch.float)),
                                                   batch_size).task_logits).exp().mean(0) for value in (1.0, 0.0)]
        rows.append(means[0] - means[1])
    return torch.stack(rows)


def accuracy_at_effective_concepts(weight: Tensor, concepts: Tensor, y: Tensor, *, nec: int, bias: Tensor | None = None) -> float:
    """Accuracy of a linear head over concepts pruned to ``nec`` effective concepts per output.

    Each output row of ``weight`` keeps its ``nec`` largest weights in magnitude; the rest are set
    to 0 (the head is not refitted).

    Args:
        weight: (T, k) the head's weights (a single-logit binary head: (1, k)).
        concepts: (N, k) what the head reads (probabilities, logits, labels).
        y: (N,) class labels.
        nec: Concepts kept per output, at least 1.
        bias: (T,) the head's bias, if it has one.

    Returns:
        The accuracy, in [0, 1].

    Examples:
        >>> from conceptlab.metrics import accuracy_at_effective_concepts
        >>> w = torch.tensor([[2.0, 0.1, -0.05], [-2.0, 0.2, 0.0]])
        >>> c = torch.randint(0, 2, (50, 3)).float()
        >>> accuracy_at_effective_concepts(w, c, (c[:, 0] < 1).long(), nec=1, bias=torch.tensor([0.0, 0.5]))
        1.0
    """
    if weight.ndim != 2 or concepts.ndim != 2 or weight.shape[1] != concepts.shape[1]:
        raise ValueError(f"weight (T, k) must read the concepts' k columns; got weight {tuple(weight.shape)} and concepts "
                         f"{tuple(concepts.shape)}")
    if not 1 <= nec <= weight.shape[1]:
        raise ValueError(f"nec must lie in 1..{weight.shape[1]} (the number of concepts); got {nec}")
    kept = weight.abs().topk(nec, dim=1).indices
    pruned = torch.zeros_like(weight).scatter(1, kept, weight.gather(1, kept))
    logits = concepts.float() @ pruned.T.float() + (0 if bias is None else bias.float())
    return float((heads.predicted_class(logits).cpu() == y.cpu()).float().mean())
