"""Concept alignment score (CAS) of the CEM paper, and what it clusters for each model."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..models.base import ConceptOutput


def concept_representations(output: ConceptOutput, n_concepts: int) -> list[Tensor]:
    """What CAS clusters for each concept, following the CEM paper's code.

    CEM: the concept's embedding. CBM: its bottleneck unit; with hybrid extra units, that unit
    plus all extras. Models without concepts: the whole latent code, for every concept.
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
    representations: list[Tensor], c: Tensor, n_cluster_counts: int = 10, max_samples: int = 1000, seed: int = 0
) -> float:
    """Concept alignment score (CAS) of the CEM paper, in [0, 1].

    For each concept, cluster its representations into n = 2 ... N clusters (``n_cluster_counts``
    evenly spaced counts, N samples), score the homogeneity of the clusters against the concept's
    labels, and take the normalised area under homogeneity-vs-n; average over concepts.
    The paper clusters with k-medoids from scikit-learn-extra, which is no longer maintained;
    conceptlab uses scikit-learn's k-means (random initialisation, one run, at most 30 Lloyd
    iterations: with hundreds of clusters the last ones only shuffle near-ties), whose centres are
    means rather than data points. Both split well-separated concept representations the same
    way; the paper integrates over every second cluster count, conceptlab over
    ``n_cluster_counts`` evenly spaced ones (the same normalised area, sampled more coarsely).
    At most ``max_samples`` evenly spaced samples are used.
    """
    from sklearn.metrics import homogeneity_score

    n = c.shape[0]
    keep = np.linspace(0, n - 1, min(n, max_samples)).astype(int)
    labels = (c.detach().cpu().numpy()[keep] > 0.5).astype(int)
    counts = np.unique(np.linspace(2, len(keep), n_cluster_counts).astype(int))
    clusterings: dict[int, list[np.ndarray]] = {}  # a representation shared by concepts is clustered once
    scores = []
    for i, rep in enumerate(representations):
        if id(rep) not in clusterings:
            clusterings[id(rep)] = _clusterings(rep.detach().float().cpu().numpy()[keep], counts, seed)
        curve = np.asarray([homogeneity_score(labels[:, i], clusters) for clusters in clusterings[id(rep)]])
        scores.append(_normalised_area(curve))
    return float(np.mean(scores))


def _normalised_area(curve: np.ndarray) -> float:
    """Trapezoidal area under evenly spaced values, divided by the area under ones."""
    if len(curve) == 1:
        return float(curve[0])
    return float((curve.sum() - (curve[0] + curve[-1]) / 2) / (len(curve) - 1))


def _clusterings(points: np.ndarray, counts: np.ndarray, seed: int) -> list[np.ndarray]:
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
