"""Slow checks that the published numbers are reproduced (run with `python -m pytest -m slow`)."""

import pytest

from conceptlab.bench import load_spec, run_grid
from conceptlab.bench.report import table_rows


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xor", "trig", "dot"])
def test_cem_and_blackbox_match_cem_table_1(name, tmp_path):
    spec = load_spec(name).with_overrides(models=["blackbox", "cem"], seeds=2, device="cpu")
    store = run_grid([spec], tmp_path, progress=False)
    for row in table_rows(store.records(), [spec]):
        mean, _ = row.metrics["task_accuracy"]
        assert abs(mean - row.reference_task_accuracy) <= 1.5, (row.model, mean, row.reference_task_accuracy)
