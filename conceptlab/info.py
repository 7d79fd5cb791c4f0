"""The shared vocabulary: which concepts and classes a tensor's columns and labels stand for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass(frozen=True)
class ConceptInfo:
    """Names that give the tensors meaning.

    ``concept_groups`` maps a group name to the indices of its concepts; by default every concept
    is its own group. ``task_names`` holds one name per class (two for a binary task). A group
    named in ``categorical`` is one categorical concept whose members are its values: exactly one
    holds per sample, models give the group a softmax, and it is corrected as a whole.

    Attributes:
        concept_names: One name per concept.
        task_names: One name per class (two for a binary task).
        concept_groups: Group name -> indices of its concepts (default: each concept its own group).
        categorical: Names of the groups that are categorical concepts (at least two values each).
    """

    concept_names: tuple[str, ...]
    task_names: tuple[str, ...]
    concept_groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    categorical: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "concept_names", tuple(str(n) for n in self.concept_names))
        object.__setattr__(self, "task_names", tuple(str(n) for n in self.task_names))
        for what, names in (("concept_names", self.concept_names), ("task_names", self.task_names)):
            repeated = sorted({n for n in names if names.count(n) > 1})
            if repeated:
                raise ValueError(f"{what} must be unique; {repeated} appear more than once")
        if len(self.task_names) < 2:
            raise ValueError(
                f"task_names needs one name per class (at least 2, e.g. ('no', 'yes') for a binary "
                f"task); got {self.task_names!r}"
            )
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

    @property
    def n_concepts(self) -> int:
        return len(self.concept_names)

    @property
    def n_classes(self) -> int:
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

    def to_dict(self) -> dict:
        data = {
            "concept_names": list(self.concept_names),
            "task_names": list(self.task_names),
            "concept_groups": {k: list(v) for k, v in self.concept_groups.items()},
        }
        if self.categorical:
            data["categorical"] = list(self.categorical)
        return data

    @classmethod
    def from_dict(cls, data: Mapping) -> ConceptInfo:
        return cls(data["concept_names"], data["task_names"], data.get("concept_groups") or {}, tuple(data.get("categorical") or ()))
