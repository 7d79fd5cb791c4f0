"""Evaluation by intervention: policies that order concept corrections, competence, accuracy curves."""

from .curves import InterventionCurve, intervention_curve, with_competence
from .plot import curve_plot
from .policies import POLICIES, Policy, random_policy, resolve_policy, uncertainty_policy, unit_ranks, units_to_concepts

__all__ = [
    "POLICIES",
    "InterventionCurve",
    "Policy",
    "curve_plot",
    "intervention_curve",
    "random_policy",
    "resolve_policy",
    "uncertainty_policy",
    "unit_ranks",
    "units_to_concepts",
    "with_competence",
]
