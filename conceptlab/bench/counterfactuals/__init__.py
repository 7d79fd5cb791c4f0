"""The planted-spurious-concept benchmark: does a conceptual counterfactual find the cause of a mistake?"""

from .report import write_counterfactual_reports
from .runner import run_counterfactual_bench, scenario_key
from .settings import METHODS, CounterfactualSpec, Scenario, parse_counterfactual_spec

__all__ = [
    "METHODS",
    "CounterfactualSpec",
    "Scenario",
    "parse_counterfactual_spec",
    "run_counterfactual_bench",
    "scenario_key",
    "write_counterfactual_reports",
]
