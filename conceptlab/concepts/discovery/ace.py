"""ACE: concepts as clusters of superpixel segments, scored with TCAV (Ghorbani et al., NeurIPS 2019).

``fit`` segments every image at several resolutions (``slic_segments``), reads each segment's
activations at a layer (averaged over space), clusters them with k-means, and keeps the clusters
that recur across images: a cluster whose segments come from fewer than ``min_image_share`` of the
images is an outlier (a part of one picture, not a concept). Each kept cluster's examples are its
``examples`` segments nearest to its centre. ``importance`` scores every concept with TCAV
(``run_tcav``: the concept's segments against segments of random images, with both published
significance tests) and returns the mean score, zero for concepts that are not significant.

Simplification of the authors' filter: they keep clusters by three rules on the number of images
and the cluster size; here one rule (the share of images) is applied, and named ``min_image_share``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..activations import reduce_activations
from ..tcav import run_tcav
from .concepts import DiscoveredConcepts
from .patches import Patches, slic_segments
from .split import SplitModel


class ACE:
    """Automatic concept-based explanations: clustered segments, scored with TCAV.

    Learned attributes: ``segments_`` (all segments), ``segment_activations_`` (M, D), ``labels_``
    (M,) cluster of each segment, ``distance_`` (M,) each segment's distance to its cluster's centre,
    ``kept_`` (the clusters that recur), ``image_share_`` (share of images each cluster's segments come from).

    Args:
        n_clusters: k-means clusters.
        resolutions: Segments per image, one SLIC segmentation per entry.
        compactness: SLIC's compactness.
        input_size: Side the segments are resized to (default: the images' side).
        min_image_share: Smallest share of the images a kept cluster's segments come from.
        examples: Segments kept per concept, nearest to the cluster centre.
        batch_size: Rows per forward pass.
        seed: Seeds k-means and the random negatives.

    Examples:
        >>> from conceptlab.concepts.discovery import ACE
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> ace = ACE(n_clusters=3, resolutions=[4], examples=4).fit(model, "1", torch.rand(6, 3, 16, 16))
        >>> ace.labels_.shape[0] == len(ace.segments_)
        True
    """

    def __init__(self, n_clusters: int = 25, *, resolutions: Sequence[int] = (15, 50, 80), compactness: float = 20.0,
                 input_size: int | None = None, min_image_share: float = 0.5, examples: int = 40, batch_size: int = 64,
                 seed: int = 0):
        self.n_clusters = n_clusters
        self.resolutions = resolutions
        self.compactness = compactness
        self.input_size = input_size
        self.min_image_share = min_image_share
        self.examples = examples
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, model: nn.Module, layer: str, images: Tensor) -> ACE:
        """Segment ``images``, embed the segments at ``layer`` and cluster them.

        Args:
            model: Any torch model.
            layer: Dotted name of the layer the segments are compared at.
            images: (N, C, H, W) images of the class to explain, as the model takes them.

        Returns:
            The fitted estimator.

        Raises:
            ValueError: Invalid settings, or fewer segments than clusters.
        """
        from sklearn.cluster import KMeans

        if self.n_clusters < 1 or not 0 < self.min_image_share <= 1 or self.examples < 4:
            raise ValueError(f"need n_clusters >= 1, min_image_share in (0, 1] and examples >= 4 (a CAV needs 4 examples "
                             f"a side); got {self.n_clusters}, {self.min_image_share}, {self.examples}")
        self.split_ = SplitModel(model, layer, batch_size=self.batch_size)
        segments = slic_segments(images, resolutions=self.resolutions, compactness=self.compactness, input_size=self.input_size)
        if len(segments) < self.n_clusters:
            raise ValueError(f"{len(segments)} segments are fewer than the {self.n_clusters} clusters asked for: give more "
                             "images, higher resolutions or fewer clusters")
        activations = self.split_.activations(segments.images)
        activations = reduce_activations(activations, "mean")
        kmeans = KMeans(self.n_clusters, n_init=10, random_state=self.seed).fit(activations.double().numpy())
        labels = torch.from_numpy(kmeans.labels_).long()
        distance = np.linalg.norm(activations.double().numpy() - kmeans.cluster_centers_[kmeans.labels_], axis=1)
        share = torch.tensor([segments.source[labels == k].unique().numel() / len(images) for k in range(self.n_clusters)])
        self.segments_: Patches = segments
        self.segment_activations_ = activations
        self.labels_ = labels
        self.distance_ = torch.from_numpy(distance).float()
        self.image_share_ = share
        self.kept_ = [k for k in range(self.n_clusters)
                      if share[k] >= self.min_image_share and int((labels == k).sum()) >= 4]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "labels_"):
            raise ValueError("ACE is not fitted: call fit(model, layer, images) first")

    def concepts(self, *, importance: Tensor | None = None) -> DiscoveredConcepts:
        """The kept clusters as concepts: each one's segments nearest to its centre.

        Args:
            importance: (K,) scores of the kept clusters (``importance``'s), if measured.

        Returns:
            The concepts, named ``concept 1`` ... in the order of ``kept_``.
        """
        self._check_fitted()
        top = []
        for k in self.kept_:
            rows = (self.labels_ == k).nonzero().flatten()
            top.append(rows[self.distance_[rows].argsort()[: self.examples]])
        return DiscoveredConcepts.from_parts("ace", self.split_.layer, self.segments_, self.segment_activations_, top,
                                             None, importance)

    def importance(self, model: nn.Module, images: Tensor, *, target: int, randoms: dict[str, Tensor],
                   alpha: float = 0.05) -> tuple[Tensor, list[dict]]:
        """TCAV of every kept concept's segments against random segments, for class ``target``.

        Args:
            model: The model ``fit`` read.
            images: (N, C, H, W) images of the class.
            target: The class explained.
            randoms: Random set name -> (n, C, s, s) random segments (at least 2 sets; e.g. ``slic_segments``
                of random images, drawn into sets).
            alpha: The significance level.

        Returns:
            (K,) mean TCAV score per kept concept (0 where not significant), and ``run_tcav``'s records.
        """
        self._check_fitted()
        found = self.concepts()
        sets = {name: parts.images for name, parts in zip(found.names, found.examples)}
        records = run_tcav(model, [self.split_.layer], sets, randoms=randoms, inputs=images, target=target, alpha=alpha,
                           batch_size=self.batch_size)
        scores = torch.tensor([r["score_mean"] if r["significant"] else 0.0 for r in records])
        return scores, records
