"""CRAFT / ICE: concepts as a non-negative factorisation of the activations of image crops
(Fel et al., CVPR 2023; Zhang et al., AAAI 2021), ranked by total Sobol indices and located on the input.

``fit`` crops every image on a grid (``grid_patches``), reads the crops' activations at a layer
(averaged over space), and factorises them (CRAFT); with ``patch_size=None`` it factorises the
layer's activation at every position of every image instead (ICE: each part is the image region a
position covers, ``cell_patches``; parts and whole images are then read at the same scale, which
resized crops are not), A ~ U W (scikit-learn's NMF): each row of W is a
concept, U says how much of each concept each crop holds. ``importance`` perturbs the concept
coefficients of whole images with quasi-random masks, A' = (U * m) W at every spatial position,
reads the class logit through the rest of the model, and returns each concept's total Sobol index
(Jansen's estimator), averaged over the images. ``attribution_maps`` upsamples each image's
per-position coefficients to the input: where each concept is.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...models import heads
from ..activations import reduce_activations
from .concepts import DiscoveredConcepts
from .patches import Patches, cell_patches, grid_patches
from .sobol import sobol_designs, total_indices
from .split import SplitModel


class CRAFT:
    """Concept discovery by non-negative matrix factorisation of crop activations, with Sobol importance.

    Learned attributes: ``patches_`` (the crops), ``patch_activations_`` (M, D), ``coefficients_``
    (M, K) U, ``basis_`` (K, D) W, ``reconstruction_error_`` (relative Frobenius error of U W).

    Args:
        n_concepts: Concepts to find (K).
        patch_size: Side of each crop in pixels; None: factorise feature-map positions (ICE).
        stride: Step between crops (default 80 % of ``patch_size``).
        input_size: Side the crops are resized to (default: the images' side).
        max_iter: NMF iterations.
        n_designs: Quasi-random designs per image for the Sobol indices.
        batch_size: Rows per forward pass.
        seed: Seeds the factorisation and the designs.

    Examples:
        >>> from conceptlab.concepts.discovery import CRAFT
        >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        ...                             torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 2))
        >>> craft = CRAFT(n_concepts=3, patch_size=8).fit(model, "1", torch.rand(4, 3, 16, 16))
        >>> craft.basis_.shape, craft.importance(model, torch.rand(2, 3, 16, 16), target=1).shape
        (torch.Size([3, 8]), torch.Size([3]))
    """

    def __init__(self, n_concepts: int = 10, *, patch_size: int | None = 64, stride: int | None = None,
                 input_size: int | None = None, max_iter: int = 500, n_designs: int = 32, batch_size: int = 64,
                 seed: int = 0):
        self.n_concepts = n_concepts
        self.patch_size = patch_size
        self.stride = stride
        self.input_size = input_size
        self.max_iter = max_iter
        self.n_designs = n_designs
        self.batch_size = batch_size
        self.seed = seed

    def _check_settings(self) -> None:
        if self.n_concepts < 1:
            raise ValueError(f"n_concepts must be at least 1; got {self.n_concepts}")
        if self.n_designs < 2 or self.n_designs & (self.n_designs - 1):
            raise ValueError(f"n_designs must be a power of 2 (a Sobol sequence's balanced size), e.g. 32; got {self.n_designs}")

    def fit(self, model: nn.Module, layer: str, images: Tensor, *,
            head: Callable[[Tensor], Tensor] | None = None) -> CRAFT:
        """Crop ``images``, read the crops' activations at ``layer`` and factorise them.

        Args:
            model: Any torch model.
            layer: Dotted name of a layer with non-negative outputs (after a ReLU).
            images: (N, C, H, W) images of the class to explain, as the model takes them.
            head: The rest of the model as a callable on the layer's activations (faster importance).

        Returns:
            The fitted estimator.

        Raises:
            ValueError: Invalid settings, negative activations, or fewer crops than concepts.
        """
        from sklearn.decomposition import NMF

        self._check_settings()
        self.split_ = SplitModel(model, layer, head=head, batch_size=self.batch_size)
        if self.patch_size is None:
            maps = self.split_.activations(images)
            if maps.ndim != 4:
                raise ValueError(f"layer {layer!r} gives vectors, not maps: factorising positions (patch_size=None) needs "
                                 "a layer with spatial maps; give a patch_size to factorise crops")
            patches = cell_patches(images, tuple(maps.shape[2:]), input_size=self.input_size)
            activations = maps.flatten(2).transpose(1, 2).reshape(-1, maps.shape[1])
        else:
            patches = grid_patches(images, patch_size=self.patch_size, stride=self.stride, input_size=self.input_size)
            activations = None
        if len(patches) < self.n_concepts:
            raise ValueError(f"{len(patches)} crops are fewer than the {self.n_concepts} concepts asked for: give more "
                             "images, a smaller patch_size or fewer concepts")
        if activations is None:
            activations = reduce_activations(self.split_.activations(patches.images), "mean")
        if activations.min() < 0:
            raise ValueError(f"layer {layer!r} has negative activations ({float(activations.min()):.3g}): CRAFT factorises "
                             "non-negative ones; pick a layer after a ReLU")
        factoriser = NMF(n_components=self.n_concepts, init="nndsvda", max_iter=self.max_iter, random_state=self.seed)
        data = activations.double().numpy()
        coefficients = factoriser.fit_transform(data)
        self.factoriser_ = factoriser
        self.patches_: Patches = patches
        self.patch_activations_ = activations
        self.coefficients_ = torch.from_numpy(coefficients).float()
        self.basis_ = torch.from_numpy(factoriser.components_).float()
        self.reconstruction_error_ = float(np.linalg.norm(data - coefficients @ factoriser.components_) / np.linalg.norm(data))
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "basis_"):
            raise ValueError("CRAFT is not fitted: call fit(model, layer, images) first")

    def coefficients(self, activations: Tensor) -> Tensor:
        """(N, K) or (N, K, h, w) concept coefficients of activations (N, D) or maps (N, D, h, w), with W fixed."""
        self._check_fitted()
        activations = activations.detach().cpu()
        if activations.ndim == 2:
            return torch.from_numpy(self.factoriser_.transform(activations.double().clamp_min(0).numpy())).float()
        n, d, *space = activations.shape
        flat = activations.flatten(2).transpose(1, 2).reshape(-1, d)
        u = torch.from_numpy(self.factoriser_.transform(flat.double().clamp_min(0).numpy())).float()
        return u.view(n, -1, self.n_concepts).transpose(1, 2).reshape(n, self.n_concepts, *space)

    def importance(self, model: nn.Module, images: Tensor, *, target: int) -> Tensor:
        """(K,) each concept's total Sobol index for class ``target``'s logit, averaged over ``images``.

        Args:
            model: The model ``fit`` read (its head, if one was given, is used again).
            images: (N, C, H, W) images of the class.
            target: The class explained (a single-logit head: 1 or 0, through +/- its logit).

        Returns:
            The indices, one per concept.
        """
        self._check_fitted()
        split = SplitModel(model, self.split_.layer, head=self.split_.head, batch_size=self.batch_size)
        activations = split.activations(images)
        u = self.coefficients(activations)
        designs = torch.from_numpy(sobol_designs(self.n_concepts, self.n_designs, self.seed))
        shape = (len(designs), self.n_concepts) + (1,) * (u.ndim - 2)
        scores = []
        for index in range(len(images)):
            perturbed = u[index][None] * designs.view(shape)  # (M, K, ...)
            rebuilt = torch.einsum("mk...,kd->md...", perturbed, self.basis_)
            logits = split.logits(rebuilt.reshape(len(designs), *activations.shape[1:]), images[index : index + 1])
            values = heads.true_class_logit(logits, torch.full((len(logits),), target)).double().numpy()
            scores.append(total_indices(values, self.n_concepts, self.n_designs))
        return torch.tensor(np.mean(scores, 0), dtype=torch.float32)

    def attribution_maps(self, images: Tensor) -> Tensor:
        """(N, K, H, W) each concept's coefficient at every position of the layer, upsampled to the images."""
        self._check_fitted()
        activations = self.split_.activations(images)
        if activations.ndim != 4:
            raise ValueError("attribution maps need a layer with spatial maps (N, D, h, w); this layer's outputs are vectors")
        maps = self.coefficients(activations)
        return F.interpolate(maps, size=images.shape[2:], mode="bilinear", align_corners=False)

    def concepts(self, *, importance: Tensor | None = None, examples: int = 20) -> DiscoveredConcepts:
        """The discovered concepts: each one's top ``examples`` crops by coefficient, and the crops' activations.

        Args:
            importance: (K,) scores to rank the concepts by (``importance``'s); default: none.
            examples: Crops kept per concept.

        Returns:
            The concepts, named ``concept 1`` ... in factorisation order.
        """
        self._check_fitted()
        order = self.coefficients_.argsort(0, descending=True)
        top = [order[:examples, k] for k in range(self.n_concepts)]
        return DiscoveredConcepts.from_parts("craft", self.split_.layer, self.patches_, self.patch_activations_, top,
                                             self.coefficients_, importance)
