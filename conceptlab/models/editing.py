"""Global model edits (Yuksekgonul et al., ICLR 2023): prune or reweight named concepts in a head
that is linear in the concepts (PCBMs and CBMs), for every class or for some.

Three methods, each preserving something different:

- ``fold-mean`` (default): scaling concept i's weight w by ``factor`` in a PCBM moves the removed
  part of its term to the concept's training mean: w d_i becomes factor w d_i + (1 - factor) w
  mean(d_i), the constant folded into the bias. A PCBM's distances are not zero when a concept is
  absent (zero is the hyperplane), so zeroing the weight alone shifts every input's logit by
  w mean(d_i); this way an input whose concept sits at its usual value keeps its logits, and only
  inputs where the concept stands out lose its effect.
- ``prune``: the paper's Prune: the weight is scaled (0: removed) and the bias kept as it is.
  Preserves every other weight and the bias; shifts the class's logits by (factor - 1) w d_i,
  also for inputs where the concept sits at its mean.
- ``prune-normalize``: the paper's Prune+Normalize: ``prune``, then the class's remaining concept
  weights rescaled to the L1 norm the row had before the edit (the paper renormalises the class's
  weights; the authors' repository holds no editing code, so the L1 norm follows a public
  reproduction). Preserves the class's total weight, so the class does not lose overall score.

A CBM's concepts are probabilities, 0 when absent: there ``fold-mean`` and ``prune`` both scale
the weight and nothing else.

A single-logit (binary) head has one weight per concept serving both classes (+w for class 1,
-w for class 0), so class-restricted edits are refused there rather than applied to both.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..info import ConceptInfo
from .base import ConceptModel
from .cbm import ConceptBottleneckModel
from .heads import weights_per_class
from .pcbm import PosthocCBM

EditMethod = Literal["fold-mean", "prune", "prune-normalize"]
EDIT_METHODS: tuple[str, ...] = get_args(EditMethod)


@dataclass(frozen=True)
class ConceptEdit:
    """Multiply the head weights of ``concepts`` by ``factor`` (0: prune) for ``classes`` (None: all),
    by ``method``: ``fold-mean``, ``prune`` or ``prune-normalize`` (see the module docstring).

    Attributes:
        concepts: The concept names edited.
        factor: What their weights are multiplied by (0 prunes them).
        classes: The classes whose weights change; None: every class.
        method: ``fold-mean``, ``prune`` or ``prune-normalize``."""

    concepts: tuple[str, ...]
    factor: float = 0.0
    classes: tuple[str, ...] | None = None
    method: EditMethod = "fold-mean"

    def __post_init__(self) -> None:
        if not self.concepts:
            raise ValueError("an edit names at least one concept, e.g. --prune has_bill_shape::hooked")
        if self.method not in EDIT_METHODS:
            raise ValueError(f"unknown edit method {self.method!r}; choose one of {', '.join(EDIT_METHODS)}")
        if not math.isfinite(self.factor) or self.factor < 0:
            raise ValueError(f"an edit's factor must be a finite number >= 0 (0 prunes, 0.5 halves, 2 doubles); got "
                             f"{self.factor} for {', '.join(self.concepts)}")

    def to_dict(self) -> dict:
        """Plain lists and numbers, as a model file's metadata stores them."""
        return {"concepts": list(self.concepts), "factor": self.factor,
                "classes": list(self.classes) if self.classes is not None else None, "method": self.method}


def _concept_weight(model: ConceptModel) -> Tensor:
    """The head's weights on the concepts, (T, k), as a view that edits write through."""
    if isinstance(model, (PosthocCBM, ConceptBottleneckModel)):
        return model.head.weight.data[:, : model.n_concepts]
    raise ValueError(f"global edits need a head linear in the concepts (PosthocCBM or ConceptBottleneckModel); "
                     f"{type(model).__name__} mixes concepts before its head")


def class_weights(model: ConceptModel) -> Tensor:
    """Each class's weight on each concept, (n_classes, k); a binary head gives (-w, +w).

    Args:
        model: A PCBM or CBM.

    Returns:
        (n_classes, k) weights.

    Examples:
        >>> from conceptlab.models import class_weights, pcbm
        >>> class_weights(pcbm(in_features=4, n_concepts=3, n_classes=2)).shape  # one binary logit read as two classes
        torch.Size([2, 3])
    """
    return weights_per_class(_concept_weight(model).detach().cpu())


def top_concepts(model: ConceptModel, info: ConceptInfo, k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` concepts with the largest positive weight for each class (zero weights left out).

    Args:
        model: A PCBM or CBM.
        info: Its concept and class names.
        k: Concepts per class.

    Returns:
        Per class name, up to ``k`` (concept, weight) pairs, largest first.

    Examples:
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import pcbm, top_concepts
        >>> model = pcbm(in_features=4, n_concepts=2, n_classes=3)
        >>> with torch.no_grad():
        ...     _ = model.head.weight.copy_(torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]]))
        >>> top_concepts(model, ConceptInfo(("stripes", "dots"), ("a", "b", "c")))
        {'a': [('stripes', 2.0)], 'b': [('dots', 1.0)], 'c': []}
    """
    weights = class_weights(model)
    top: dict[str, list[tuple[str, float]]] = {}
    for c, name in enumerate(info.task_names):
        values, index = weights[c].topk(min(k, weights.shape[1]))
        top[name] = [(info.concept_names[int(i)], float(v)) for v, i in zip(values, index) if v > 0]
    return top


def sparsity(model: ConceptModel) -> float:
    """The fraction of the head's concept weights that are exactly zero.

    Args:
        model: A PCBM or CBM.

    Returns:
        A fraction in [0, 1].

    Examples:
        >>> from conceptlab.models import pcbm, sparsity
        >>> sparsity(pcbm(in_features=4, n_concepts=3, n_classes=2))  # a PCBM head starts at zero
        1.0
    """
    return float((_concept_weight(model) == 0).float().mean())


def _indices(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    missing = [w for w in wanted if w not in names]
    if missing:
        shown = ", ".join(list(names)[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(f"unknown {what} {missing}; the model's {what}s are: {shown}")
    return [list(names).index(w) for w in wanted]


def matching_concepts(info: ConceptInfo, pattern: str) -> tuple[str, ...]:
    """The concept names that ``pattern`` (a regular expression) finds: an edit rule by name.

    Args:
        info: The concept names to search.
        pattern: A regular expression (``re.search``).

    Returns:
        The matching names, in the info's order.

    Examples:
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import matching_concepts
        >>> matching_concepts(ConceptInfo(("wing::blue", "wing::red", "bill::blue"), ("a", "b")), "blue")
        ('wing::blue', 'bill::blue')
    """
    try:
        found = tuple(name for name in info.concept_names if re.search(pattern, name))
    except re.error as err:
        raise ValueError(f"{pattern!r} is not a valid regular expression ({err})") from None
    if not found:
        raise ValueError(f"no concept name matches {pattern!r}")
    return found


def apply_edits(model: ConceptModel, info: ConceptInfo, edits: Sequence[ConceptEdit]) -> ConceptModel:
    """A copy of ``model`` with ``edits`` applied in order; ``model`` itself is left as it was.

    Args:
        model: A PCBM or CBM (a head linear in the concepts).
        info: Its concept and class names.
        edits: The edits, applied in order.

    Returns:
        The edited copy.

    Examples:
        >>> from conceptlab.datasets import ConceptInfo
        >>> from conceptlab.models import ConceptEdit, apply_edits, class_weights, pcbm
        >>> model = pcbm(in_features=4, n_concepts=2, n_classes=3)
        >>> torch.nn.init.ones_(model.head.weight)  # doctest: +ELLIPSIS
        Parameter...
        >>> edited = apply_edits(model, ConceptInfo(("stripes", "dots"), ("a", "b", "c")), [ConceptEdit(("dots",))])
        >>> class_weights(edited)[:, 1].tolist()  # "dots" pruned from every class
        [0.0, 0.0, 0.0]
    """
    edited = copy.deepcopy(model)
    weight = _concept_weight(edited)
    for edit in edits:
        columns = _indices(info.concept_names, edit.concepts, "concept")
        if edit.classes is None:
            rows = list(range(weight.shape[0]))
        elif weight.shape[0] == 1:
            raise ValueError("this model has one logit for its two classes: a concept's weight serves both, so edit it "
                             "for all classes (leave classes out)")
        else:
            rows = _indices(info.task_names, edit.classes, "class")
        block = (torch.tensor(rows)[:, None], torch.tensor(columns)[None, :])
        if isinstance(edited, PosthocCBM) and edit.method == "fold-mean":
            kept_out = (1 - edit.factor) * weight[block] @ edited.distance_mean[columns]
            edited.head.bias.data[rows] += kept_out
        before = weight[rows].abs().sum(1)
        weight[block] *= edit.factor
        if edit.method == "prune-normalize":
            after = weight[rows].abs().sum(1)
            rescale = torch.where(after > 0, before / after.clamp(min=torch.finfo(after.dtype).tiny), torch.ones_like(after))
            weight[rows] *= rescale[:, None]
    return edited
