"""The shared vocabulary: which concepts and classes a tensor's columns and labels stand for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

TaskKind = Literal["multiclass", "multilabel", "regression"]
TASK_KINDS: tuple[str, ...] = ("multiclass", "multilabel", "regression")
"""What ``y`` holds: one class index per sample, several 0/1 labels, or several real targets."""


@dataclass(frozen=True)
class ConceptInfo:
    """Names that give the tensors meaning.

    ``concept_groups`` maps a group name to the indices of its concepts; by default every concept
    is its own group. A group named in ``categorical`` is one categorical concept whose members are
    its values: exactly one holds per sample, models give the group a softmax, and it is corrected
    as a whole. A one-concept group named in ``continuous`` is a real number the model regresses
    (its label is the value; an intervention writes the value).

    ``task`` says what ``y`` holds: ``multiclass`` (one class index per sample; ``task_names`` has
    one name per class, two for a binary task), ``multilabel`` (``(N, L)`` 0/1 labels, one name
    per label) or ``regression`` (``(N, T)`` real targets, one name per target).

    Attributes:
        concept_names: One name per concept.
        task_names: One name per class (multiclass), per label (multilabel) or per target (regression).
        concept_groups: Group name -> indices of its concepts (default: each concept its own group).
        categorical: Names of the groups that are categorical concepts (at least two values each).
        continuous: Names of the one-concept groups that are continuous concepts.
        task: ``multiclass``, ``multilabel`` or ``regression``.
    """

    concept_names: tuple[str, ...]
    task_names: tuple[str, ...]
    concept_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    categorical: tuple[str, ...] = ()
    continuous: tuple[str, ...] = ()
    task: TaskKind = "multiclass"

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept_names", tuple(str(n) for n in self.concept_names))
        object.__setattr__(self, "task_names", tuple(str(n) for n in self.task_names))
        for what, names in (("concept_names", self.concept_names), ("task_names", self.task_names)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique; {repeated} appear more than once")
        if self.task not in TASK_KINDS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {', '.join(TASK_KINDS)}")
        if self.task == "multiclass" and len(self.task_names) < 2:
            raise ValueError(
                f"task_names needs one name per class (at least 2, e.g. ('no', 'yes') for a binary "
                f"task); got {self.task_names!r}"
            )
        if not self.task_names:
            raise ValueError(f"a {self.task} task needs task_names: one name per {'label' if self.task == 'multilabel' else 'target'}")
        groups = self.concept_groups or {name: (i,) for i, name in enumerate(self.concept_names)}
        groups = {str(name): tuple(int(i) for i in idx) for name, idx in groups.items()}
        k = len(self.concept_names)
        covered = sorted(i for idx in groups.values() for i in idx)
        if covered != list(range(k)):
            raise ValueError(
                f"concept_groups must cover each of the {k} concepts exactly once; "
                f"they cover indices {covered}"
            )
        object.__setattr__(self, "concept_groups", groups)
        object.__setattr__(self, "categorical", tuple(str(g) for g in self.categorical))
        unknown = [g for g in self.categorical if g not in groups]
        if unknown:
            raise ValueError(f"categorical names {unknown}, which are not concept groups; the groups are {list(groups)}")
        single = [g for g in self.categorical if len(groups[g]) < 2]
        if single:
            raise ValueError(f"categorical group(s) {single} have one member; a categorical concept needs a member per "
                             "value (two or more), and a one-value concept is binary")
        object.__setattr__(self, "continuous", tuple(str(g) for g in self.continuous))
        wrong = [g for g in self.continuous if g not in groups or len(groups[g]) != 1 or g in self.categorical]
        if wrong:
            raise ValueError(f"continuous names {wrong} are not one-concept groups outside `categorical`; a continuous "
                             f"concept is one column (the groups are {list(groups)})")

    @property
    def n_concepts(self) -> int:
        return len(self.concept_names)

    @property
    def n_classes(self) -> int:
        """Classes of a multiclass task; labels or targets of a multilabel or regression one."""
        return len(self.task_names)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(self.concept_groups)

    def group_matrix(self) -> Tensor:
        """Boolean (n_groups, n_concepts) membership matrix."""
        matrix = torch.zeros(len(self.concept_groups), self.n_concepts, dtype=torch.bool)
        for g, idx in enumerate(self.concept_groups.values()):
            matrix[g, list(idx)] = True
        return matrix

    def categorical_indices(self) -> tuple[tuple[int, ...], ...]:
        """The member indices of each categorical group, in ``categorical`` order."""
        return tuple(self.concept_groups[g] for g in self.categorical)

    def continuous_indices(self) -> tuple[int, ...]:
        """The column of each continuous concept, in ``continuous`` order."""
        return tuple(self.concept_groups[g][0] for g in self.continuous)

    def to_dict(self) -> dict:
        data = {
            "concept_names": list(self.concept_names),
            "task_names": list(self.task_names),
            "concept_groups": {k: list(v) for k, v in self.concept_groups.items()},
        }
        if self.categorical:
            data["categorical"] = list(self.categorical)
        if self.continuous:
            data["continuous"] = list(self.continuous)
        if self.task != "multiclass":
            data["task"] = self.task
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> ConceptInfo:
        return cls(data["concept_names"], data["task_names"], data.get("concept_groups") or {},
                   tuple(data.get("categorical") or ()), tuple(data.get("continuous") or ()), data.get("task", "multiclass"))
