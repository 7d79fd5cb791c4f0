"""The intervention lab inside `conceptlab bench`: IntCEM, every policy, AUC, cost and impurity."""

import csv

import pytest

from conceptlab.bench import parse_spec, run_grid, write_reports
from conceptlab.settings import SettingsError

PNG = b"\x89PNG\r\n\x1a\n"


def _spec(**evaluation):
    return parse_spec({
        "name": "lab", "dataset": {"name": "xor", "size": 300}, "models": ["cbm-fuzzy", "intcem"], "seeds": 1,
        "model": {"hidden": [16], "embedding_size": 4, "latent_dim": 16, "policy_hidden": [16]},
        "train": {"max_epochs": 2, "device": "cpu", "intcem": {"max_horizon": 3}},
        "evaluation": {"intervention_repeats": 1, "intervention_competence": [1.0], **evaluation},
    })


def test_bench_records_every_policy_its_auc_cost_and_impurity(tmp_path):
    spec = _spec(intervention_policies=["random", "ectp", "oracle", "learned", "coop"], purity=True)
    store = run_grid([spec], tmp_path, workers=1, progress=False)
    records = {r["model"]: r for r in store.records()}
    assert set(records["intcem"]["interventions"]) == {"random", "ectp", "oracle", "learned", "coop"}
    assert set(records["cbm-fuzzy"]["interventions"]) == {"random", "ectp", "oracle", "coop"}  # it learned no policy
    for record in records.values():  # CooP's weights were chosen on the run's validation split, and recorded
        assert set(record["intervention_policy_settings"]["coop"]) == {"concept_weight", "label_weight"}
        assert set(record["intervention_early_weighted"]) == set(record["interventions"])
    assert all(steps == 1.0 for steps in records["intcem"]["history"]["intcem"]["trajectory_steps"])
    for record in records.values():
        assert set(record["intervention_auc"]) == set(record["interventions"])
        assert all(0 <= auc <= 1 for auc in record["intervention_auc"].values())
        assert all(seconds > 0 for seconds in record["intervention_cost"].values())
        assert record["oracle_impurity"] is not None and record["niche_impurity"] is not None

    markdown = write_reports(store.records(), [spec], tmp_path)
    assert "| OIS | NIS |" in markdown
    assert "| intcem | learned |" in markdown and "| intcem | oracle † |" in markdown
    assert "| cbm-fuzzy | learned |" not in markdown
    assert (tmp_path / "policies.png").read_bytes()[:8] == PNG
    with open(tmp_path / "interventions.csv") as handle:
        rows = {(r["model"], r["curve"]): r for r in csv.DictReader(handle)}
    assert rows[("intcem", "oracle")]["uses_labels"] == "True" and rows[("intcem", "learned")]["uses_labels"] == "False"
    assert float(rows[("cbm-fuzzy", "random")]["auc_mean"]) == pytest.approx(100 * records["cbm-fuzzy"]["intervention_auc"]["random"])


def test_learned_policy_without_groups_is_refused_before_anything_runs():
    with pytest.raises(SettingsError, match="intervention_groups: intcem learns to rank concept groups"):
        _spec(intervention_policies=["learned"], intervention_groups=False)
    with pytest.raises(SettingsError, match="intervention_policies"):
        _spec(intervention_policies=["psychic"])


def test_the_cli_runs_every_policy_on_a_saved_intcem(tmp_path, capsys, monkeypatch):
    import conceptlab.interventions as cli_interventions
    from conceptlab import cli
    from conceptlab.interventions import POLICIES

    assert cli.POLICY_NAMES.split(", ") == list(POLICIES)
    spec = _spec(intervention_policies=["random"])
    run_grid([spec], tmp_path, workers=1, progress=False)
    (checkpoint,) = (tmp_path / "checkpoints").glob("lab-intcem-seed0-*.pt")
    assert cli.main(["intervene", str(checkpoint), "--policy", "learned", "--groups", "--repeats", "1",
                     "--out", str(tmp_path / "iv")]) == 0
    assert (tmp_path / "iv" / "interventions-learned-groups.png").read_bytes()[:8] == PNG
    assert cli.main(["intervene", str(checkpoint), "--policy", "coop", "--groups", "--repeats", "1",
                     "--out", str(tmp_path / "iv")]) == 0  # fitted on the checkpoint's own training and validation splits
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    started = []
    monkeypatch.setattr(cli_interventions, "intervention_curve", lambda *a, **k: started.append(1))
    assert cli.main(["intervene", str(checkpoint), "--out", str(blocker / "iv")]) == 2  # an unwritable --out
    assert "cannot write results to" in capsys.readouterr().err and not started  # said before computing anything
    assert (tmp_path / "iv" / "interventions-coop-groups.json").exists()
    assert cli.main(["intervene", str(checkpoint), "--policy", "psychic"]) != 0
    assert "unknown intervention policy 'psychic'" in capsys.readouterr().err
