"""What the benchmark measures on each trained model: accuracy, interventions, concept alignment."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any, Literal

from ..datasets.base import ConceptDataset
from ..interventions import intervention_curve
from ..metrics import concept_alignment_score, concept_representations, summarize
from ..models.base import ConceptModel, decode_all, encode_all
from ..settings import Bool, Float, Fraction, PositiveInt, settings, validated


@settings
class EvaluationSettings:
    """Test-time measurements of a benchmark (read from the config's ``evaluation`` block)."""

    binary_threshold: Float = 0.0  # 0.5 reproduces the official CEM code's scoring
    intervention_policies: tuple[Literal["random", "uncertainty"], ...] = ("random", "uncertainty")
    intervention_groups: Bool = True  # intervene on concept groups (else single concepts)
    intervention_repeats: PositiveInt = 5  # random orders (and wrong values) drawn per curve
    intervention_competence: tuple[Fraction, ...] = (1.0, 0.0)  # 1: true values, 0: all wrong
    concept_alignment: Bool = True  # CAS of the CEM paper

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationSettings:
        """Build from a config's ``evaluation:`` block; unknown keys and bad values name the key."""
        return validated(cls, values, "evaluation")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def evaluate_split(model: ConceptModel, data: ConceptDataset, settings: EvaluationSettings) -> dict[str, Any]:
    """Task and concept metrics on one split (the validation split, for model selection)."""
    return dict(summarize(decode_all(model, encode_all(model, data.inputs)), data, settings.binary_threshold))


def evaluate_run(model: ConceptModel, test: ConceptDataset, settings: EvaluationSettings, seed: int) -> dict[str, Any]:
    """Metrics, intervention curves and CAS of one trained model on the test split."""
    start = time.perf_counter()
    codes = encode_all(model, test.inputs)  # encoded once for the metrics and every curve
    output = decode_all(model, codes)
    record: dict[str, Any] = dict(summarize(output, test, settings.binary_threshold))
    record["interventions"] = record["interventions_std"] = None
    if model.n_concepts and settings.intervention_policies:
        curves = [
            intervention_curve(
                model, test, policy, settings.intervention_groups, competence,
                settings.intervention_repeats, seed, settings.binary_threshold, codes,
            )
            for competence in settings.intervention_competence
            for policy in settings.intervention_policies
        ]
        record["interventions"] = {c.name: list(c.accuracy_mean) for c in curves}
        record["interventions_std"] = {c.name: list(c.accuracy_std) for c in curves}
    record["concept_alignment"] = None
    if settings.concept_alignment:
        representations = concept_representations(output, test.info.n_concepts)
        record["concept_alignment"] = concept_alignment_score(representations, test.c, seed=seed)
    record["eval_seconds"] = round(time.perf_counter() - start, 3)
    return record
