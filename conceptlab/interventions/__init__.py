"""Evaluation by intervention: policies that order concept corrections, competence, accuracy curves."""

from .curves import InterventionCurve, normalised_auc, with_competence
from .plot import curve_plot
from .policies import (
    BINARY_CONCEPTS,
    MULTICLASS,
    UNCERTAINTY,
    Policy,
    PolicyState,
    check_applies,
    random_policy,
    unit_ranks,
    units_to_concepts,
)
from .registry import POLICIES, resolve_policy
from .run import fit_policy, intervention_curve
from .sequential import coop_policy
from .stepwise import next_units

__all__ = [
    "BINARY_CONCEPTS",
    "MULTICLASS",
    "POLICIES",
    "UNCERTAINTY",
    "InterventionCurve",
    "Policy",
    "PolicyState",
    "check_applies",
    "coop_policy",
    "curve_plot",
    "fit_policy",
    "intervention_curve",
    "next_units",
    "normalised_auc",
    "random_policy",
    "resolve_policy",
    "unit_ranks",
    "units_to_concepts",
    "with_competence",
]
