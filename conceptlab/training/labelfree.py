"""Fitting a label-free CBM (Oikarinen et al., ICLR 2023) on embeddings the user supplies.

The steps, as the authors' ``train_cbm.py`` and concept-set notebook run them:

1. Filter the candidate concepts by their text embeddings: names longer than ``max_length``
   characters; concepts whose text is at least ``class_similarity_cutoff`` cosine-similar to a
   class name's; of two concepts at least ``concept_similarity_cutoff`` similar to each other, the
   one with the lower summed similarity to all concepts (the more specific one).
2. Score every image against every concept with the image-text model (cosine similarity, P) and
   drop concepts whose five highest training scores average at most ``clip_cutoff``.
3. Learn the projection W_c (no bias) from backbone embeddings to one axis per concept by
   maximising the mean cubed-cosine similarity between each axis's activations over a batch and
   the concept's column of P (both centred, raised to the third power, compared by cosine), with
   Adam; the validation similarity is checked every ``check_every`` steps and training stops at
   the first check that does not improve, keeping the best weights.
4. Drop concepts whose validation similarity is at most ``interpretability_cutoff``.
5. Standardise the axes with the training mean and standard deviation, and solve the sparse
   head: elastic-net logistic regression, strength ``lam``, L1 share ``l1_ratio``.

Nothing reads concept labels; a dataset's ``c`` (where it has one) is only for evaluating the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..datasets.base import ConceptDataset
from ..models.lfcbm import LabelFreeCBM, lfcbm
from ..runtime import seeded
from ..settings import Float, Fraction, NonNegativeFloat, PositiveFloat, PositiveInt, settings
from .elastic_net import ElasticNetFit, fit_elastic_net


@settings
class LabelFreeConfig:
    """The label-free CBM's settings (defaults: the authors' ``train_cbm.py`` and concept-set notebook).

    Attributes:
        max_length: Longest concept name kept, in characters.
        class_similarity_cutoff: Concepts at least this similar to a class name are removed.
        concept_similarity_cutoff: Of two concepts at least this similar, one is removed.
        clip_cutoff: Concepts whose top-5 mean training image-text similarity is at most this are removed.
        interpretability_cutoff: Concepts whose validation cubed-cosine similarity is at most this are removed.
        projection_steps: Most Adam steps for the projection.
        projection_lr: Adam's learning rate for the projection.
        projection_batch_size: Images per projection step (all, when fewer).
        check_every: Steps between validation checks (early stopping).
        lam: The head's elastic-net strength (the authors' 0.0007, which their solver divides by its L1 share 0.99).
        l1_ratio: The L1 share of the head's penalty.
        max_iter: The head solver's iteration limit.
        tol: The head solver's tolerance.
    """

    max_length: PositiveInt = 30
    class_similarity_cutoff: Fraction = 0.85
    concept_similarity_cutoff: Fraction = 0.9
    clip_cutoff: Float = 0.25
    interpretability_cutoff: Float = 0.45
    projection_steps: PositiveInt = 1000
    projection_lr: PositiveFloat = 1e-3
    projection_batch_size: PositiveInt = 50000
    check_every: PositiveInt = 50
    lam: NonNegativeFloat = 7e-4 / 0.99
    l1_ratio: Fraction = 0.99
    max_iter: PositiveInt = 5000
    tol: PositiveFloat = 1e-5


@dataclass(frozen=True)
class LabelFreeReport:
    """What fitting kept and why the rest went.

    Attributes:
        concepts: The kept concepts, in the model's axis order.
        removed: Each removed concept's name and the filter that removed it.
        similarity: The kept concepts' validation cubed-cosine similarity.
        projection_steps: Adam steps run; ``best_step`` the one whose weights were kept.
        best_step: The step of the kept projection weights.
        head: The sparse head's solution.
    """

    concepts: tuple[str, ...]
    removed: dict[str, str]
    similarity: tuple[float, ...]
    projection_steps: int
    best_step: int
    head: ElasticNetFit


def cubed_cosine_similarity(targets: Tensor, activations: Tensor) -> Tensor:
    """Per column, the cosine similarity of the centred, cubed ``targets`` and ``activations`` (N, k) -> (k,)."""
    def prepared(values: Tensor) -> Tensor:
        return F.normalize((values - values.mean(0, keepdim=True)).pow(3), dim=0)

    return (prepared(targets.float()) * prepared(activations.float())).sum(0)


def image_text_scores(image_embeddings: Tensor, text_embeddings: Tensor) -> Tensor:
    """Cosine similarity (N, K) of every image embedding to every concept's text embedding."""
    return F.normalize(image_embeddings.float(), dim=1) @ F.normalize(text_embeddings.float(), dim=1).T


def text_filters(names: Sequence[str], text_embeddings: Tensor, class_text_embeddings: Tensor | None,
                 config: LabelFreeConfig) -> dict[int, str]:
    """Candidates removed by their names and text embeddings alone, by index, with the reason."""
    removed = {i: f"name longer than {config.max_length} characters" for i, name in enumerate(names)
               if len(name) > config.max_length}
    text = F.normalize(text_embeddings.float(), dim=1)
    if class_text_embeddings is not None:
        to_classes = text @ F.normalize(class_text_embeddings.float(), dim=1).T
        for i in (to_classes.amax(1) >= config.class_similarity_cutoff).nonzero().flatten().tolist():
            removed.setdefault(i, f"text similar to a class name ({to_classes[i].max():.2f})")
    similar = text @ text.T
    total = similar.sum(1)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if i in removed or j in removed or similar[i, j] < config.concept_similarity_cutoff:
                continue
            dropped, kept = (i, j) if total[i] < total[j] else (j, i)
            removed[dropped] = f"text similar to {names[kept]!r} ({similar[i, j]:.2f})"
    return removed


def fit_label_free(
    train: ConceptDataset,
    val: ConceptDataset,
    *,
    image_embeddings: tuple[Tensor, Tensor],
    text_embeddings: Tensor,
    concept_names: Sequence[str],
    class_text_embeddings: Tensor | None = None,
    config: LabelFreeConfig | None = None,
    seed: int = 0,
) -> tuple[LabelFreeCBM, LabelFreeReport]:
    """Filter the candidate concepts, learn the projection and solve the sparse head.

    Args:
        train: Training split: backbone embeddings ``x`` (N, D) and task labels ``y``; its concept
            labels, if any, are never read.
        val: Validation split of the same kind (early stopping and the interpretability filter).
        image_embeddings: The image-text model's embeddings of the training and validation images, (N, E) each.
        text_embeddings: (K, E) the candidate concepts' text embeddings.
        concept_names: The K candidates' names.
        class_text_embeddings: (C, E) the class names' text embeddings (None: no class filter).
        config: The settings (default: the authors').
        seed: Seeds the projection's initialisation and batches.

    Returns:
        The fitted model (one axis per kept concept) and the report.

    Raises:
        ValueError: Shapes that disagree, non-finite embeddings, or no concept left after filtering
            (the message says which filter removed how many).

    Examples:
        >>> from conceptlab.datasets import planted_embeddings
        >>> from conceptlab.training import fit_label_free
        >>> data = planted_embeddings(size=600)
        >>> model, report = fit_label_free(data.splits.train, data.splits.val, image_embeddings=data.image_embeddings[:2],
        ...                                text_embeddings=data.text_embeddings, concept_names=data.concept_names,
        ...                                class_text_embeddings=data.class_text_embeddings)
        >>> len(report.concepts), report.removed["never active"].split(" (")[0]
        (6, 'never strongly present')
    """
    config = config or LabelFreeConfig()
    train_images, val_images = image_embeddings
    _check_inputs(train, val, train_images, val_images, text_embeddings, concept_names, class_text_embeddings)
    removed = text_filters(concept_names, text_embeddings, class_text_embeddings, config)
    kept = [i for i in range(len(concept_names)) if i not in removed]
    scores = image_text_scores(train_images, text_embeddings[kept])
    top = scores.topk(min(5, len(scores)), dim=0).values.mean(0)
    for index, value in zip(kept, top.tolist()):
        if value <= config.clip_cutoff:
            removed[index] = f"never strongly present (top-5 image-text similarity {value:.2f} <= {config.clip_cutoff})"
    kept = [i for i in range(len(concept_names)) if i not in removed]
    _check_left(kept, removed, "the text and activation filters")
    targets, val_targets = (image_text_scores(images, text_embeddings[kept]) for images in (train_images, val_images))
    x, val_x = train.x.flatten(1).float(), val.x.flatten(1).float()
    with seeded(seed):
        projection = torch.nn.Linear(x.shape[1], len(kept), bias=False)
        steps, best_step, weight = _learn_projection(projection, x, targets, val_x, val_targets, config)
    with torch.no_grad():
        similarity = cubed_cosine_similarity(val_targets, val_x @ weight.T)
    for position, value in enumerate(similarity.tolist()):
        if value <= config.interpretability_cutoff:
            removed[kept[position]] = f"not interpretable (validation similarity {value:.2f} <= {config.interpretability_cutoff})"
    axes = [position for position, index in enumerate(kept) if index not in removed]
    kept = [kept[position] for position in axes]
    _check_left(kept, removed, "the filters")
    model = lfcbm(in_features=x.shape[1], n_concepts=len(kept), n_classes=int(train.info.n_classes))
    with torch.no_grad():
        model.projection.weight.copy_(weight[axes])
        raw = model.projection(x)
        model.activation_mean.copy_(raw.mean(0))
        model.activation_std.copy_(raw.std(0).clamp(min=1e-12))
        activations = model.activations(x)
        model.calibrate_interventions(activations)
    with torch.enable_grad():
        head = fit_elastic_net(activations, train.y, model.head.out_features, lam=config.lam, l1_ratio=config.l1_ratio,
                               max_iter=config.max_iter, tol=config.tol)
    with torch.no_grad():
        model.head.weight.copy_(head.weight)
        model.head.bias.copy_(head.bias)
    report = LabelFreeReport(tuple(concept_names[i] for i in kept), {concept_names[i]: why for i, why in sorted(removed.items())},
                             tuple(round(similarity[p].item(), 4) for p in axes), steps, best_step, head)
    return model, report


def _learn_projection(projection: torch.nn.Linear, x: Tensor, targets: Tensor, val_x: Tensor, val_targets: Tensor,
                      config: LabelFreeConfig) -> tuple[int, int, Tensor]:
    """Adam on the negative mean cubed-cosine similarity; (steps run, best step, best weights)."""
    optimizer = torch.optim.Adam(projection.parameters(), lr=config.projection_lr)
    batch = min(config.projection_batch_size, len(x))
    best, best_step, best_weight = float("inf"), 0, projection.weight.detach().clone()
    step = 0
    for step in range(config.projection_steps):
        rows = torch.randperm(len(x))[:batch]
        loss = -cubed_cosine_similarity(targets[rows], projection(x[rows])).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % config.check_every == 0 or step == config.projection_steps - 1:
            with torch.no_grad():
                val_loss = -cubed_cosine_similarity(val_targets, projection(val_x)).mean().item()
            if val_loss >= best and step > 0:
                break
            best, best_step, best_weight = val_loss, step, projection.weight.detach().clone()
    return step + 1, best_step, best_weight


def _check_inputs(train: ConceptDataset, val: ConceptDataset, train_images: Tensor, val_images: Tensor, text: Tensor,
                  names: Sequence[str], class_text: Tensor | None) -> None:
    if train.x is None or val.x is None:
        raise ValueError("a label-free CBM reads backbone embeddings: pass splits whose x are (N, D) tensors "
                         "(conceptlab.datasets.tensors, or cached features)")
    for split, images, name in ((train, train_images, "training"), (val, val_images, "validation")):
        if images.ndim != 2 or images.shape[0] != len(split):
            raise ValueError(f"the {name} image embeddings have shape {tuple(images.shape)}; expected ({len(split)}, E), "
                             "one row per image of the split")
    if text.ndim != 2 or text.shape[1] != train_images.shape[1] or val_images.shape[1] != train_images.shape[1]:
        raise ValueError(f"the text embeddings {tuple(text.shape)} and image embeddings {tuple(train_images.shape)}, "
                         f"{tuple(val_images.shape)} must share their width E (the same image-text model)")
    if len(names) != text.shape[0]:
        raise ValueError(f"{len(names)} concept names for {text.shape[0]} text embeddings; give one name per row")
    if class_text is not None and (class_text.ndim != 2 or class_text.shape[1] != text.shape[1]):
        raise ValueError(f"the class text embeddings {tuple(class_text.shape)} must be (C, {text.shape[1]})")
    for tensor, name in ((train.x, "backbone"), (train_images, "image"), (val_images, "image"), (text, "text")):
        if not torch.isfinite(tensor).all():
            raise ValueError(f"the {name} embeddings contain NaN or infinite values")


def _check_left(kept: list[int], removed: dict[int, str], where: str) -> None:
    if kept:
        return
    reasons: dict[str, int] = {}
    for why in removed.values():
        reasons[why.split(" (")[0]] = reasons.get(why.split(" (")[0], 0) + 1
    raise ValueError(f"no concept is left after {where} ({'; '.join(f'{n}: {w}' for w, n in reasons.items())}); "
                     "lower the matching cutoff in LabelFreeConfig or supply more candidate concepts")
