"""What the benchmark measures on each trained model: accuracy, interventions, concept alignment, impurity, leakage."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from typing import Annotated, Any

import torch
from pydantic import AfterValidator, StrictStr
from torch import Tensor, nn

from ..datasets.base import ConceptDataset, ConceptSplits
from ..datasets.supervision import labelled_rows
from ..info import ConceptInfo
from ..interventions import POLICIES, fit_policy, intervention_curve
from ..metrics import (
    accuracy_at_effective_concepts,
    concept_alignment_score,
    concept_representations,
    concepts_task_leakage,
    interconcept_leakage,
    niche_impurity_score,
    oracle_impurity_score,
    own_representations,
    probe_leakage,
    summarize,
)
from ..models.base import ConceptModel, decode_all, encode_all
from ..models.dcr import DeepConceptReasoner, class_rules
from ..settings import Bool, Float, Fraction, PositiveInt, settings, validated

logger = logging.getLogger(__name__)


def _known_policy(name: str) -> str:
    if name not in POLICIES:
        raise ValueError(f"unknown intervention policy {name!r}; choose from {', '.join(POLICIES)}")
    return name


PolicyName = Annotated[StrictStr, AfterValidator(_known_policy)]  # a key of interventions.POLICIES, the one list


@settings
class EvaluationSettings:
    """Test-time measurements of a benchmark (read from the config's ``evaluation`` block)."""

    binary_threshold: Float = 0.0  # 0.5 reproduces the official CEM code's scoring
    intervention_policies: tuple[PolicyName, ...] = ("random", "uncertainty")  # "learned*": models that learned one
    intervention_groups: Bool = True  # intervene on concept groups (else single concepts)
    intervention_repeats: PositiveInt = 5  # random orders (and wrong values) drawn per curve
    intervention_competence: tuple[Fraction, ...] = (1.0, 0.0)  # 1: true values, 0: all wrong
    concept_alignment: Bool = True  # CAS of the CEM paper (k-medoids as the paper, and k-means)
    purity: Bool = False  # oracle and niche impurity scores (OIS, NIS)
    leakage: Bool = False  # inter-concept and concepts-task leakage (kNN mutual information, nats)
    effective_concepts: PositiveInt | None = None  # accuracy of a linear concept head pruned to this many concepts per class

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EvaluationSettings:
        """Build from a config's ``evaluation:`` block; unknown keys and bad values name the key."""
        return validated(cls, values, "evaluation")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _leakage(own: Tensor, c: Tensor, y: Tensor, task: str) -> dict[str, float | None]:
    """Mean inter-concept leakage and, for a multiclass task, linear-probe leakage and (where the
    concept patterns are frequent enough to estimate within) concepts-task leakage (None otherwise)."""
    icl = float(torch.nanmean(interconcept_leakage(own, c))) if c.shape[1] > 1 else None
    ctl = probe = None
    if task == "multiclass":
        probe = probe_leakage(own, c, y)
        try:
            ctl = concepts_task_leakage(own, c, y).value
        except ValueError:  # every concept pattern too rare to estimate within (many concepts)
            ctl = None
    return {"interconcept_leakage": icl, "concepts_task_leakage": ctl, "probe_leakage": probe}


def _pruned_head_accuracy(model: ConceptModel, output, y: Tensor, nec: int) -> float | None:
    """Accuracy of the model's linear head over its concepts pruned to ``nec`` concepts per class
    (Srivastava et al.'s NEC); None for models whose head reads more than the concepts (embeddings,
    extra units, a residual) or is not one linear layer."""
    head, k = getattr(model, "head", None), model.n_concepts
    if (not isinstance(head, nn.Linear) or not k or head.in_features != k or output.bottleneck.shape[1] != k
            or getattr(model, "residual", None) is not None):
        return None
    return accuracy_at_effective_concepts(head.weight.detach(), output.bottleneck, y, nec=min(nec, k),
                                          bias=None if head.bias is None else head.bias.detach())


def labelled_concepts(info: ConceptInfo) -> list[int]:
    """The concepts with 0/1 labels (binary and categorical members): what CAS and impurity score."""
    continuous = set(info.continuous_indices())
    return [i for i in range(info.n_concepts) if i not in continuous]


def not_applicable(policies: list[str], info: ConceptInfo, model: ConceptModel | None = None) -> dict[str, str]:
    """The named policies whose needs these data (and ``model``) do not meet (``Policy.unmet_needs``,
    what ``interventions.check_applies`` refuses), with the reason."""
    unmet = {name: POLICIES[name].unmet_needs(info, model) for name in policies}
    return {name: f"the {name!r} policy assumes {' and '.join(needs)}" for name, needs in unmet.items() if needs}


def evaluate_split(model: ConceptModel, data: ConceptDataset, settings: EvaluationSettings) -> dict[str, Any]:
    """Task and concept metrics on one split (the validation split, for model selection)."""
    return dict(summarize(decode_all(model, encode_all(model, data.inputs)), data, settings.binary_threshold))


def evaluate_run(model: ConceptModel, splits: ConceptSplits, settings: EvaluationSettings, seed: int) -> dict[str, Any]:
    """Metrics, intervention curves (with their AUC and policy cost), CAS and impurity of one
    trained model on the test split. Policies that learn from data are fitted on the training and
    validation splits first (what they chose is in ``intervention_policy_settings``); the
    ``learned`` policies are skipped for models without one.

    Accuracy and concept metrics read every test sample (a missing concept label is skipped);
    intervention curves, CAS and impurity need every label of a sample, so where some test labels
    are missing they run on the test samples with all labels known, and the record says how many
    (``labelled_test_samples``)."""
    start = time.perf_counter()
    test = splits.test
    codes = encode_all(model, test.inputs)  # encoded once for the metrics and every curve
    output = decode_all(model, codes)
    record: dict[str, Any] = dict(summarize(output, test, settings.binary_threshold))
    rows = labelled_rows(test)
    if rows is not None:  # curves, CAS and impurity on the samples whose labels are all known
        test, codes = test.subset(rows), codes[rows]
        output = decode_all(model, codes)
        record["labelled_test_samples"] = len(rows)
    for key in ("interventions", "interventions_std", "intervention_auc", "intervention_early_weighted",
                "intervention_cost", "intervention_policy_settings"):
        record[key] = None
    policies = [p for p in settings.intervention_policies if not p.startswith("learned") or hasattr(model, "unit_scores")]
    skipped = not_applicable(policies, test.info, model) if model.n_concepts else {}
    if skipped:
        logger.warning("skipping intervention policies that do not apply to these data: %s", skipped)
        record["intervention_policies_skipped"] = skipped
        policies = [p for p in policies if p not in skipped]
    if model.n_concepts and policies and len(test):
        fitted = {p: fit_policy(p, model, train=splits.train, val=splits.val, groups=settings.intervention_groups, seed=seed)
                  for p in policies}
        curves = [
            intervention_curve(
                model, test, fitted[policy], groups=settings.intervention_groups, competence=competence,
                repeats=settings.intervention_repeats, seed=seed, binary_threshold=settings.binary_threshold, codes=codes,
            )
            for competence in settings.intervention_competence
            for policy in policies
        ]
        record["interventions"] = {c.name: list(c.accuracy_mean) for c in curves}
        record["interventions_std"] = {c.name: list(c.accuracy_std) for c in curves}
        record["intervention_auc"] = {c.name: c.auc for c in curves}
        record["intervention_early_weighted"] = {c.name: c.early_weighted_accuracy for c in curves}
        record["intervention_cost"] = {c.name: c.seconds_per_sample for c in curves}  # policy seconds per sample
        record["intervention_policy_settings"] = {p: rule.settings for p, rule in fitted.items() if rule.settings} or None
    record["concept_alignment"] = record["concept_alignment_kmeans"] = None
    labelled = labelled_concepts(test.info)  # CAS and impurity score 0/1 labels: continuous concepts are left out
    if settings.concept_alignment and len(test) and labelled:  # the paper's k-medoids, and k-means beside it
        representations = [concept_representations(output, test.info.n_concepts)[i] for i in labelled]
        c = test.c[:, labelled]
        record["concept_alignment"] = concept_alignment_score(representations, c, seed=seed)
        record["concept_alignment_kmeans"] = concept_alignment_score(representations, c, seed=seed, clustering="kmeans")
    record["oracle_impurity"] = record["niche_impurity"] = None
    own = own_representations(output, test.info.n_concepts)
    if settings.purity and own is not None and len(test) and labelled:
        own, c = own[:, labelled], test.c[:, labelled]
        record["oracle_impurity"] = oracle_impurity_score(own, c, seed=seed)
        record["niche_impurity"] = niche_impurity_score(own, c, seed=seed)
    record["interconcept_leakage"] = record["concepts_task_leakage"] = record["probe_leakage"] = None
    if settings.leakage and own is not None and len(test) and labelled:
        record.update(_leakage(own[:, labelled], test.c[:, labelled], test.y, test.info.task))
    record["accuracy_at_nec"] = None
    if settings.effective_concepts and len(test) and test.info.task == "multiclass":
        record["accuracy_at_nec"] = _pruned_head_accuracy(model, output, test.y, settings.effective_concepts)
    if isinstance(model, DeepConceptReasoner) and len(test) and test.features is not None:  # its explanation: rules per class
        record["rules"] = {name: [[rule, count] for rule, count in rules]
                           for name, rules in class_rules(model, test.features, test.info).items()}
    record["eval_seconds"] = round(time.perf_counter() - start, 3)
    return record
