"""Concept alignment score (CAS) of the CEM paper, and what it clusters for each model."""

from __future__ import annotations

from typing import Literal

import kmedoids
import numpy as np
import torch
from torch import Tensor

from ..models.base import ConceptOutput
from .labels import check_binary_labels


def concept_representations(output: ConceptOutput, n_concepts: int) -> list[Tensor]:
    """What CAS clusters for each concept, following the CEM paper's code.

    CEM: the concept's embedding. CBM: its bottleneck unit; with hybrid extra units, that unit
    plus all extras. Models without concepts: the whole latent code, for every concept.

    Args:
        output: A model's output on the data.
        n_concepts: The model's number of concepts.

    Returns:
        One (N, d) tensor per concept.

    Examples:
        >>> from conceptlab.metrics import concept_representations
        >>> from conceptlab.models import cem
        >>> out = cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=3)(torch.randn(5, 2))
        >>> [r.shape for r in concept_representations(out, 2)]
        [torch.Size([5, 3]), torch.Size([5, 3])]
    """
    if output.concept_embeddings is not None:
        return [output.concept_embeddings[:, i] for i in range(n_concepts)]
    code = output.bottleneck
    if output.concept_probs is None:
        return [code] * n_concepts
    if code.shape[1] == n_concepts:
        return [code[:, i : i + 1] for i in range(n_concepts)]
    extras = code[:, n_concepts:]
    return [torch.cat([code[:, i : i + 1], extras], dim=1) for i in range(n_concepts)]


def concept_alignment_score(
    representations: list[Tensor],
    c: Tensor,
    *,
    n_cluster_counts: int = 10,
    max_samples: int = 1000,
    seed: int = 0,
    clustering: Literal["kmedoids", "kmeans"] = "kmedoids",
) -> float:
    """Concept alignment score (CAS) of the CEM paper, in [0, 1].

    For each concept, cluster its representations into n = 2 ... N clusters (``n_cluster_counts``
    evenly spaced counts, N samples), score the homogeneity of the clusters against the concept's
    labels, and take the normalised area under homogeneity-vs-n; average over concepts.

    ``clustering``: ``"kmedoids"`` as the paper (its code calls scikit-learn-extra's ``KMedoids``
    with its defaults: the alternating algorithm from the n points of least total distance; here
    the ``kmedoids`` package's alternating solver from the n *distinct* such points, see
    ``kmedoids_clusters``), or ``"kmeans"``
    (scikit-learn's k-means, random initialisation, one run, at most 30 Lloyd iterations:
    conceptlab's rule before 0.2). Both split well-separated representations the same way.
    The paper's code integrates over its ``step`` evenly spaced cluster counts, as here.
    At most ``max_samples`` evenly spaced samples are used.

    Args:
        representations: One (N, d_i) tensor per concept (``concept_representations``).
        c: (N, k) concept labels, 0 or 1.
        n_cluster_counts: How many cluster counts between 2 and N are scored.
        max_samples: At most this many evenly spaced samples are clustered.
        seed: Seeds the clustering.
        clustering: ``kmedoids`` (the paper) or ``kmeans``.

    Returns:
        CAS in [0, 1].

    Examples:
        >>> from conceptlab.metrics import concept_alignment_score
        >>> c = (torch.rand(200, 2) > 0.5).float()
        >>> aligned = [c[:, i:i + 1] + 0.01 * torch.randn(200, 1) for i in range(2)]
        >>> concept_alignment_score(aligned, c, n_cluster_counts=3, clustering="kmeans") > 0.9
        True
    """
    from sklearn.metrics import homogeneity_score

    check_binary_labels(c, "CAS")
    n = c.shape[0]
    keep = np.linspace(0, n - 1, min(n, max_samples)).astype(int)
    labels = (c.detach().cpu().numpy()[keep] > 0.5).astype(int)
    counts = np.unique(np.linspace(2, len(keep), n_cluster_counts).astype(int))
    clusterings: dict[int, list[np.ndarray]] = {}  # a representation shared by concepts is clustered once
    scores = []
    for i, rep in enumerate(representations):
        if id(rep) not in clusterings:
            points = rep.detach().float().cpu().numpy()[keep]
            clusterings[id(rep)] = (_kmedoids_clusterings(points, counts) if clustering == "kmedoids"
                                    else _kmeans_clusterings(points, counts, seed))
        curve = np.asarray([homogeneity_score(labels[:, i], clusters) for clusters in clusterings[id(rep)]])
        scores.append(_normalised_area(curve))
    return float(np.mean(scores))


def _normalised_area(curve: np.ndarray) -> float:
    """Trapezoidal area under evenly spaced values, divided by the area under ones."""
    if len(curve) == 1:
        return float(curve[0])
    return float((curve.sum() - (curve[0] + curve[-1]) / 2) / (len(curve) - 1))


def kmedoids_clusters(points: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels, medoid indices) of the alternating k-medoids algorithm on Euclidean distances,
    started from the ``n_clusters`` *distinct* points of least total distance: scikit-learn-extra's
    "heuristic" start, which the CEM paper's code used by default, except that it may pick
    identical points, leaving clusters empty on representations with few distinct values (a
    Bool-CBM's 0/1 units: CAS 0.2 % instead of 97 %)."""
    from sklearn.metrics import pairwise_distances

    return _alternating(pairwise_distances(points.astype(np.float64)), _distinct(points), n_clusters)


def _distinct(points: np.ndarray) -> np.ndarray:
    """Indices of one point per distinct value."""
    return np.unique(points, axis=0, return_index=True)[1]


def _alternating(distances: np.ndarray, distinct: np.ndarray, n_clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Alternating k-medoids from the ``n_clusters`` distinct points of least total distance."""
    candidates = distinct[np.argsort(distances.sum(1)[distinct], kind="stable")]
    start = np.sort(candidates[:n_clusters]).astype(np.int64)
    result = kmedoids.alternating(distances, start, max_iter=300)
    return np.asarray(result.labels), np.asarray(result.medoids)


def _kmedoids_clusterings(points: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """k-medoids cluster labels of ``points`` for each cluster count (capped at the distinct points)."""
    from sklearn.metrics import pairwise_distances

    distances = pairwise_distances(points.astype(np.float64))  # once for every count
    distinct = _distinct(points)
    return [_alternating(distances, distinct, int(min(count, len(distinct))))[0] for count in counts]


def _kmeans_clusterings(points: np.ndarray, counts: np.ndarray, seed: int) -> list[np.ndarray]:
    """k-means cluster labels of ``points`` for each cluster count (capped at the distinct points)."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    distinct = len(np.unique(points, axis=0))
    labels = []
    for count in counts:
        # scikit-learn's OpenMP threads keep spinning after k-means and slow torch down in the
        # same process; use no more threads than torch was given
        with warnings.catch_warnings(), threadpool_limits(limits=torch.get_num_threads()):
            warnings.simplefilter("ignore", ConvergenceWarning)
            kmeans = KMeans(n_clusters=int(min(count, distinct)), init="random", n_init=1, max_iter=30, random_state=seed)
            labels.append(kmeans.fit_predict(points))
    return labels
