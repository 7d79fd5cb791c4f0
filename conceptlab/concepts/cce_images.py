"""Counterfactual explanations of image files, end to end: the library side of ``conceptlab cce``.

``explain_images`` reads the images, takes the embedding the classifier head receives, and
solves CCE towards one class, with the head, class names and image size the concept bank
recorded when it was saved (``bank.save(path, head=..., classes=..., image_size=...)``), unless
given. It is to CCE what ``run_tcav`` is to TCAV.

Example:
    >>> found = explain_images(model, CAVBank.load("bank.pt"), "photos/", target="Red_winged_Blackbird")  # doctest: +SKIP
    >>> found.result.explanation(0)                                                              # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..datasets.transforms import image_transform
from ..models import heads
from .activations import layer_inputs, resolve_layer
from .cav import CAVBank
from .cce import CCE, Counterfactuals
from .examples import image_files, read_image
from .tcav import resolve_class


@dataclass(frozen=True)
class ImageCounterfactuals:
    """What ``explain_images`` found.

    Attributes:
        files: The image files, in the order of the results' rows.
        images: (N, 3, H, W) the images as the model read them.
        result: The counterfactuals (weights, success, target probability, ...), one row per image.
        target: The class index the counterfactuals move towards.
        classes: Class names (from the argument or the bank), possibly empty.
        head: The name of the head whose input was explained.
    """

    files: list[Path]
    images: Tensor
    result: Counterfactuals
    target: int
    classes: list[str]
    head: str

    def class_name(self, index: int) -> str:
        """The name of class ``index`` (its number when no names are known)."""
        return self.classes[index] if index < len(self.classes) else str(index)


def explain_images(
    model: nn.Module,
    bank: CAVBank,
    images: str | Path | Sequence[str | Path],
    *,
    target: int | str,
    head: str | None = None,
    classes: Sequence[str] | None = None,
    image_size: int | None = None,
    published: bool = False,
    **solver_options: Any,
) -> ImageCounterfactuals:
    """Explain every image under ``images`` towards class ``target`` with conceptual counterfactuals.

    Args:
        model: The classifier (any ``nn.Module`` whose ``head`` maps an embedding to logits).
        bank: A fitted concept bank on that embedding.
        images: Image files or folders of them (one path, or several).
        target: The class to move towards: an index, or a name of ``classes``.
        head: The head module's name; default: the one the bank recorded.
        classes: One name per class; default: the names the bank recorded.
        image_size: The side images are resized to; default: the bank's, else 224.
        published: Use the solver as Abid et al. published it (``CCE.published``) instead of
            conceptlab's defaults.
        solver_options: ``CCE`` settings to override (``steps``, ``alpha``, ``beta``, ``lr``, ...).

    Raises:
        ValueError: No head known, an unknown target class, or images that cannot be read.

    Returns:
        The counterfactuals, one row per image, with the image paths.

    Examples:
        >>> found = explain_images(model, CAVBank.load("bank.pt"), "photos/", target="Cardinal")  # doctest: +SKIP
    """
    classes = list(classes or bank.saved_metadata.get("classes", []))
    head_name = head or bank.saved_metadata.get("head")
    if not head_name:
        raise ValueError("the bank does not say which layer's input it was fitted on: pass the head's name "
                         "(--head NAME: the module that maps the embedding to logits, e.g. fc)")
    head_module = resolve_layer(model, head_name)
    size = image_size or int(bank.saved_metadata.get("image_size", 224))
    files = image_files([str(images)] if isinstance(images, (str, Path)) else [str(p) for p in images])
    transform = image_transform(size)
    x = torch.stack([read_image(file, transform) for file in files])
    embeddings = layer_inputs(model, head_name, x)
    with torch.no_grad():
        head_classes = heads.n_classes(heads.output_logits(head_module(embeddings[:1])))
    index = resolve_class(target, head_classes, classes or None)
    solver = (CCE.published if published else CCE)(bank, head_module, **solver_options)
    return ImageCounterfactuals(list(files), x, solver.explain(embeddings, index), index, classes, head_name)
