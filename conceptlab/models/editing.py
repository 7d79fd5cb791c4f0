"""Global model edits (Yuksekgonul et al., ICLR 2023): prune or reweight named concepts in a head
that is linear in the concepts (PCBMs and CBMs), for every class or for some.

Scaling concept i's weight w by ``factor`` in a PCBM moves the removed part of its term to the
concept's training mean: w d_i becomes factor w d_i + (1 - factor) w mean(d_i), the constant
folded into the bias. A PCBM's distances are not zero when a concept is absent (zero is the
hyperplane), so zeroing the weight alone would shift every input's logit by w mean(d_i) and
favour or penalise the class for all inputs; this way an input whose concept sits at its usual
value keeps its logits, and only inputs where the concept stands out lose its effect. A CBM's
concepts are probabilities, 0 when absent: there the weight is scaled and nothing else.

A single-logit (binary) head has one weight per concept serving both classes (+w for class 1,
-w for class 0), so class-restricted edits are refused there rather than applied to both.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..info import ConceptInfo
from .base import ConceptModel
from .cbm import ConceptBottleneckModel
from .pcbm import PosthocCBM


@dataclass(frozen=True)
class ConceptEdit:
    """Multiply the head weights of ``concepts`` by ``factor`` (0: prune) for ``classes`` (None: all)."""

    concepts: tuple[str, ...]
    factor: float = 0.0
    classes: tuple[str, ...] | None = None

    def to_dict(self) -> dict:
        """Plain lists and numbers, as a model file's metadata stores them."""
        return {"concepts": list(self.concepts), "factor": self.factor,
                "classes": list(self.classes) if self.classes is not None else None}


def _concept_weight(model: ConceptModel) -> Tensor:
    """The head's weights on the concepts, (T, k), as a view that edits write through."""
    if isinstance(model, (PosthocCBM, ConceptBottleneckModel)):
        return model.head.weight.data[:, : model.n_concepts]
    raise ValueError(f"global edits need a head linear in the concepts (PosthocCBM or ConceptBottleneckModel); "
                     f"{type(model).__name__} mixes concepts before its head")


def class_weights(model: ConceptModel) -> Tensor:
    """Each class's weight on each concept, (n_classes, k); a binary head gives (-w, +w)."""
    weight = _concept_weight(model).detach().cpu()
    return torch.cat([-weight, weight]) if weight.shape[0] == 1 else weight.clone()


def top_concepts(model: ConceptModel, info: ConceptInfo, k: int = 5) -> dict[str, list[tuple[str, float]]]:
    """The ``k`` concepts with the largest positive weight for each class (zero weights left out)."""
    weights = class_weights(model)
    top: dict[str, list[tuple[str, float]]] = {}
    for c, name in enumerate(info.task_names):
        values, index = weights[c].topk(min(k, weights.shape[1]))
        top[name] = [(info.concept_names[int(i)], float(v)) for v, i in zip(values, index) if v > 0]
    return top


def sparsity(model: ConceptModel) -> float:
    """The fraction of the head's concept weights that are exactly zero."""
    return float((_concept_weight(model) == 0).float().mean())


def _indices(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    missing = [w for w in wanted if w not in names]
    if missing:
        shown = ", ".join(list(names)[:8]) + (", ..." if len(names) > 8 else "")
        raise ValueError(f"unknown {what} {missing}; the model's {what}s are: {shown}")
    return [list(names).index(w) for w in wanted]


def matching_concepts(info: ConceptInfo, pattern: str) -> tuple[str, ...]:
    """The concept names that ``pattern`` (a regular expression) finds: an edit rule by name."""
    try:
        found = tuple(name for name in info.concept_names if re.search(pattern, name))
    except re.error as err:
        raise ValueError(f"{pattern!r} is not a valid regular expression ({err})") from None
    if not found:
        raise ValueError(f"no concept name matches {pattern!r}")
    return found


def apply_edits(model: ConceptModel, info: ConceptInfo, edits: Sequence[ConceptEdit]) -> ConceptModel:
    """A copy of ``model`` with ``edits`` applied in order; ``model`` itself is left as it was."""
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
        if isinstance(edited, PosthocCBM):
            kept_out = (1 - edit.factor) * weight[block] @ edited.distance_mean[columns]
            edited.head.bias.data[rows] += kept_out
        weight[block] *= edit.factor
    return edited
