"""Tables (markdown, CSV) and plots of benchmark results, with published numbers beside ours."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import write_atomic
from ..interventions import POLICIES, normalised_auc
from ..plotting import pyplot, save_figure
from .spec import BenchSpec

METRICS = ("task_accuracy", "task_balanced_accuracy", "task_top5_accuracy", "task_subset_accuracy", "task_r2", "concept_accuracy",
           "concept_auc", "concept_r2", "concept_alignment", "concept_alignment_kmeans", "oracle_impurity", "niche_impurity",
           "interconcept_leakage", "concepts_task_leakage", "probe_leakage", "accuracy_at_nec")
CURVE_FRACTIONS = (0.0, 0.25, 0.5, 0.75, 1.0)
SELECTABLE = ("val_task_accuracy", "val_task_balanced_accuracy", "val_task_r2", "val_concept_accuracy", "val_concept_auc")


@dataclass(frozen=True)
class Row:
    """One (benchmark, model) cell of the table; metrics are percentages as (mean, std) or None."""

    benchmark: str
    model: str
    runs: int
    failed: int
    metrics: dict[str, tuple[float, float] | None]
    reference_task_accuracy: float | None
    reference_alignment: float | None
    epochs: float | None
    train_seconds: float | None
    curves: dict[str, tuple[list[float], list[float]]]  # policy -> (mean, std over seeds) per unit count
    aucs: dict[str, tuple[float, float]]  # policy -> intervention AUC %, (mean, std over seeds)
    costs: dict[str, float]  # policy -> mean seconds the policy spent per sample
    chosen: dict[str, Any] | None = None  # the sweep point selected on the validation split
    points: int = 1  # sweep points this row was selected from
    stopped: int = 0  # runs of the chosen point that ASHA stopped early (search.asha)
    rules: dict[str, list[tuple[str, int]]] | None = None  # a DCR's rules per class -> in how many seeds' top rules


def _rules(runs: list[dict[str, Any]]) -> dict[str, list[tuple[str, int]]] | None:
    """For a DCR's runs: each class's rules, by the number of seeds whose most frequent rules hold them."""
    recorded = [r["rules"] for r in runs if r.get("rules")]
    if not recorded:
        return None
    seeds: dict[str, Counter] = {}
    for per_class in recorded:
        for name, rules in per_class.items():
            seeds.setdefault(name, Counter()).update({rule for rule, _ in rules})
    return {name: counter.most_common() for name, counter in seeds.items()}


def _rules_section(out: io.StringIO, cells: list[Row]) -> None:
    """The rules column of a DCR row: each class's rules and the seeds that found them."""
    for r in cells:
        if r.rules:
            out.write(f"Rules of {r.model} (test split; in how many of its {r.runs} seeds' most frequent rules):\n")
            for name, rules in r.rules.items():
                shown = "; ".join(f"{rule} [{n}/{r.runs}]" for rule, n in rules[:3]) or "no sample predicted by a true rule"
                out.write(f"  {name} <- {shown}\n")
            out.write("\n")


def _runs_cell(row: Row) -> str:
    """Finished runs, and how many failed or were stopped by ASHA."""
    notes = [f"{row.failed} failed"] * bool(row.failed) + [f"{row.stopped} stopped by ASHA"] * bool(row.stopped)
    return f"{row.runs}" + (f" ({', '.join(notes)})" if notes else "")


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table_rows(records: list[dict[str, Any]], specs: list[BenchSpec], select: str = "val_task_accuracy") -> list[Row]:
    """Aggregate the runs of the current configs, model by model in config order.

    With a sweep, each model's row is the point whose mean ``select`` (a validation metric) over
    seeds is highest; its test metrics are reported and no test number takes part in the choice.
    With ``search.asha`` a point's mean is over its finished runs (a point ASHA stopped on every
    seed cannot be chosen), and the row counts the chosen point's stopped runs.
    """
    if select not in SELECTABLE:
        raise ValueError(f"unknown selection metric {select!r}; choose from {', '.join(SELECTABLE)}")
    rows = []
    for spec in specs:
        reference = (spec.reference or {}).get("task_accuracy", {})
        reference_cas = (spec.reference or {}).get("concept_alignment", {})
        points = spec.points()
        for model in spec.models:
            candidates = []
            for point in points:
                config_hash = point.config_hash()
                runs = [r for r in records if r["benchmark"] == spec.name and r["model"] == model and r["config_hash"] == config_hash]
                ok = [r for r in runs if r.get("status") == "ok"]
                score = _mean_std([r.get(select) for r in ok])
                candidates.append((score[0] if score else float("-inf"), point, runs, ok))
            if len(candidates) > 1 and any(ok for *_, ok in candidates) and all(c[0] == float("-inf") for c in candidates):
                raise ValueError(f"{spec.name}: no run records {select} to choose a sweep point by (a regression task "
                                 "has no accuracy); pick a metric the runs have, e.g. --select val_task_r2")
            _, point, runs, ok = max(candidates, key=lambda c: c[0]) if len(candidates) > 1 else candidates[0]
            metrics = {m: _mean_std([100 * r[m] if r.get(m) is not None else None for r in ok]) for m in METRICS}
            epochs = _mean_std([r["epochs"] for r in ok])
            seconds = _mean_std([r["train_seconds"] for r in ok])
            rows.append(
                Row(spec.name, model, len(ok), sum(r.get("status") == "failed" for r in runs), metrics, reference.get(model),
                    reference_cas.get(model), epochs[0] if epochs else None, seconds[0] if seconds else None,
                    _curves(ok), _aucs(ok), _costs(ok), dict(point.point) if spec.sweep else None, len(points),
                    sum(r.get("status") == "stopped" for r in runs), _rules(ok))
            )
    return rows


def _curves(runs: list[dict[str, Any]]) -> dict[str, tuple[list[float], list[float]]]:
    """Mean and std over seeds of each intervention curve, in percent."""
    names = [name for name in (runs[0].get("interventions") or {})] if runs else []
    curves = {}
    for name in names:
        per_seed = [r["interventions"][name] for r in runs if name in (r.get("interventions") or {})]
        columns = list(zip(*per_seed))
        curves[name] = ([100 * statistics.fmean(col) for col in columns],
                        [100 * statistics.stdev(col) if len(col) > 1 else 0.0 for col in columns])
    return curves


def _aucs(runs: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """Mean and std over seeds of each curve's normalised AUC, in percent (computed from the
    curve for records written before the AUC was stored)."""
    per_name: dict[str, list[float]] = {}
    for r in runs:
        stored = r.get("intervention_auc") or {}
        for name, curve in (r.get("interventions") or {}).items():
            per_name.setdefault(name, []).append(100 * stored.get(name, normalised_auc(curve)))
    return {name: _mean_std(values) for name, values in per_name.items()}


def _costs(runs: list[dict[str, Any]]) -> dict[str, float]:
    per_name: dict[str, list[float]] = {}
    for r in runs:
        for name, seconds in (r.get("intervention_cost") or {}).items():
            per_name.setdefault(name, []).append(seconds)
    return {name: statistics.fmean(values) for name, values in per_name.items()}


def uses_labels(curve_name: str) -> bool:
    """Whether the policy behind a curve name reads the true concepts or labels."""
    policy = POLICIES.get(curve_name.split("@")[0])
    return bool(policy and policy.uses_labels)


def _curve_label(name: str) -> str:
    return f"{name} †" if uses_labels(name) else name


def _cost(seconds: float | None) -> str:
    if seconds is None:
        return ""
    return f"{1e6 * seconds:.1f} µs" if seconds < 1e-3 else f"{1e3 * seconds:.2f} ms"


def _fmt(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def _point(chosen: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in chosen.items()) if chosen else ""


def _task_column(cells: list[Row]) -> tuple[str, str]:
    """The metric a table's task column shows: accuracy, or R^2 where no run has an accuracy (a
    regression task), with its header."""
    if cells and all(r.metrics["task_accuracy"] is None for r in cells) and any(r.metrics["task_r2"] for r in cells):
        return "task_r2", "task R^2 x 100"
    return "task_accuracy", "task accuracy"


def markdown_table(rows: list[Row], specs: list[BenchSpec], select: str = "val_task_accuracy") -> str:
    out = io.StringIO()
    for spec in specs:
        source = (spec.reference or {}).get("source", "published")
        out.write(f"## {spec.name}\n\nTask accuracy on the test split, % (mean ± std over seeds). Reference: {source}.\n\n")
        if spec.sweep:
            out.write(f"Sweep over {', '.join(k for k, _ in spec.sweep)}: each row is the point with the best mean "
                      f"{select} over seeds (validation split only), out of {len(spec.points())}; its test metrics "
                      "are shown.\n\n")
        cells = [r for r in rows if r.benchmark == spec.name]
        impurity = any(r.metrics["oracle_impurity"] for r in cells)
        leakage = any(r.metrics["interconcept_leakage"] is not None for r in cells)
        pruned = any(r.metrics["accuracy_at_nec"] is not None for r in cells)
        top5 = any(r.metrics["task_top5_accuracy"] for r in cells)
        task, header = _task_column(cells)
        out.write(f"| model | {header} | reference | balanced accuracy " + ("| top-5 " if top5 else "")
                  + "| concept accuracy | concept AUC | CAS | CAS k-means | CAS reference "
                  + ("| OIS | NIS " if impurity else "") + ("| ICL | CTL | probe leakage " if leakage else "")
                  + ("| accuracy at NEC " if pruned else "") + "| epochs | train s | runs |\n")
        out.write("|---|---|---|---|" + ("---|" if top5 else "") + "---|---|---|---|---|" + ("---|---|" if impurity else "")
                  + ("---|---|---|" if leakage else "") + ("---|" if pruned else "") + "---|---|---|\n")
        for r in cells:
            runs = _runs_cell(r)
            model = f"{r.model} ({_point(r.chosen)})" if r.chosen else r.model
            purity = f"| {_fmt(r.metrics['oracle_impurity'])} | {_fmt(r.metrics['niche_impurity'])} " if impurity else ""
            if leakage:
                purity += (f"| {_fmt(r.metrics['interconcept_leakage'])} | {_fmt(r.metrics['concepts_task_leakage'])} "
                           f"| {_fmt(r.metrics['probe_leakage'])} ")
            if pruned:
                purity += f"| {_fmt(r.metrics['accuracy_at_nec'])} "
            top = f"| {_fmt(r.metrics['task_top5_accuracy'])} " if top5 else ""
            out.write(
                f"| {model} | {_fmt(r.metrics[task])} | {_opt(r.reference_task_accuracy)} "
                f"| {_fmt(r.metrics['task_balanced_accuracy'])} {top}| {_fmt(r.metrics['concept_accuracy'])} | {_fmt(r.metrics['concept_auc'])} "
                f"| {_fmt(r.metrics['concept_alignment'])} | {_fmt(r.metrics['concept_alignment_kmeans'])} "
                f"| {_opt(r.reference_alignment)} {purity}"
                f"| {_opt(r.epochs, 0)} | {_opt(r.train_seconds, 1)} | {runs} |\n"
            )
        if any(r.metrics["concept_alignment"] for r in cells):
            out.write("\nCAS: concept alignment × 100 with k-medoids, as the CEM paper; CAS k-means: the same score with "
                      "k-means clusters.\n")
        if impurity:
            out.write("\nOIS and NIS: oracle and niche impurity scores × 100 (lower is purer; Espinosa Zarlenga et al., "
                      "AAAI 2023).\n")
        if pruned:
            out.write(f"\nAccuracy at NEC: test accuracy of the linear concept head pruned to its "
                      f"{spec.evaluation.effective_concepts} largest weights per "
                      "class, not refitted (Srivastava et al., 2024); empty for heads that read more than the concepts.\n")
        if leakage:
            out.write("\nICL and CTL: inter-concept leakage (mean I(r_i; c_j | c_i)) and concepts-task leakage (I(R; Y | C)) "
                      "in nats × 100, k-nearest-neighbour estimates on the test split (docs/guide/quality.md); CTL is empty "
                      "where the concept patterns are too rare to estimate within, and reads low for high-dimensional "
                      "representations (a kNN estimate needs many samples per pattern); probe leakage: the held-out "
                      "accuracy points a linear probe gains from the representations beyond the true concepts.\n")
        out.write("\n")
        _rules_section(out, cells)
        _intervention_section(out, cells)
    return out.getvalue()


def _opt(value: float | None, digits: int = 2) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _intervention_section(out: io.StringIO, cells: list[Row]) -> None:
    names = sorted({name for r in cells for name in r.curves}, key=lambda n: ("@" in n, n))
    if not names:
        return
    headers = " | ".join(f"{int(100 * f)}%" for f in CURVE_FRACTIONS)
    out.write("Task accuracy % after intervening on a fraction of the concept groups (mean ± std over seeds); "
              "AUC: normalised area under accuracy against the fraction corrected, %; cost: the policy's own time "
              "per sample for a whole order. † reads the true concepts or labels (an upper bound, not deployable).\n\n")
    out.write(f"| model | policy | {headers} | AUC | cost |\n|---|---|" + "---|" * (len(CURVE_FRACTIONS) + 2) + "\n")
    for r in cells:
        for name in names:
            if name not in r.curves:
                continue
            mean, std = r.curves[name]
            groups = len(mean) - 1
            points = [int(f * groups + 0.5) for f in CURVE_FRACTIONS]
            values = " | ".join(f"{mean[p]:.2f} ± {std[p]:.2f}" for p in points)
            out.write(f"| {r.model} | {_curve_label(name)} | {values} | {_fmt(r.aucs.get(name))} "
                      f"| {_cost(r.costs.get(name))} |\n")
    out.write("\n")


def csv_table(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["benchmark", "model", "runs", "failed", "stopped"]
    for m in METRICS:
        header += [f"{m}_mean", f"{m}_std"]
    writer.writerow(header + ["reference_task_accuracy", "reference_concept_alignment", "epochs_mean", "train_seconds_mean",
                              "chosen"])
    for r in rows:
        values: list[Any] = [r.benchmark, r.model, r.runs, r.failed, r.stopped]
        for m in METRICS:
            values += list(r.metrics[m]) if r.metrics[m] else ["", ""]
        extras = (r.reference_task_accuracy, r.reference_alignment, r.epochs, r.train_seconds, _point(r.chosen) or None)
        writer.writerow(values + ["" if v is None else v for v in extras])
    return out.getvalue()


def intervention_csv(rows: list[Row]) -> str:
    """One line per (benchmark, model, curve): AUC mean and std (%), policy seconds per sample."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["benchmark", "model", "curve", "uses_labels", "auc_mean", "auc_std", "seconds_per_sample"])
    for r in rows:
        for name, (mean, std) in r.aucs.items():
            writer.writerow([r.benchmark, r.model, name, uses_labels(name), mean, std, r.costs.get(name, "")])
    return out.getvalue()


def accuracy_plot(rows: list[Row], specs: list[BenchSpec], path: Path) -> None:
    """One panel per benchmark: our task accuracy (bars, std error bars) and the reference (markers)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(specs), figsize=(4.5 * len(specs), 3.6), squeeze=False)
    for ax, spec in zip(axes[0], specs):
        cells = [r for r in rows if r.benchmark == spec.name and r.metrics["task_accuracy"]]
        xs = range(len(cells))
        ax.bar(xs, [r.metrics["task_accuracy"][0] for r in cells], yerr=[r.metrics["task_accuracy"][1] for r in cells],
               color="#4c78a8", capsize=3, label="conceptlab")
        refs = [(i, r.reference_task_accuracy) for i, r in enumerate(cells) if r.reference_task_accuracy is not None]
        if refs:
            ax.scatter(*zip(*refs), color="#e45756", marker="D", zorder=3, label="published")
        ax.set_xticks(list(xs), [r.model for r in cells], rotation=45, ha="right")
        ax.set_ylim(0, 100)
        ax.set_title(spec.name)
        ax.set_ylabel("task accuracy (%)")
    axes[0][0].legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)


def intervention_plot(rows: list[Row], specs: list[BenchSpec], path: Path) -> bool:
    """Rows: curves (policy, competence); columns: benchmarks; a line per model with a std band."""
    names = sorted({n for r in rows for n in r.curves}, key=lambda n: ("@" in n, n))
    if not names:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(len(names), len(specs), figsize=(4.5 * len(specs), 3.4 * len(names)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for i, name in enumerate(names):
        for j, spec in enumerate(specs):
            ax = axes[i][j]
            for k, r in enumerate(row for row in rows if row.benchmark == spec.name):
                if name not in r.curves:
                    continue
                mean, std = r.curves[name]
                xs = list(range(len(mean)))
                ax.plot(xs, mean, marker="o", ms=3, color=colours(k), label=r.model)
                ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                color=colours(k), alpha=0.15)
            ax.set_title(f"{spec.name}: {name}", fontsize=10)
            ax.set_xlabel("concept groups intervened")
            ax.xaxis.get_major_locator().set_params(integer=True)
            ax.set_ylabel("task accuracy (%)")
            ax.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = max(1, min(len(labels), int(2.2 * len(specs)) + 1))  # what fits the figure's width
    rows = -(-len(labels) // ncol)
    fig.legend(handles, labels, loc="upper center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - (0.1 + 0.22 * rows) / fig.get_figheight()))
    save_figure(fig, path)
    return True


def write_reports(records: list[dict[str, Any]], specs: list[BenchSpec], out_dir: Path,
                  *,
                  select: str = "val_task_accuracy", curves: bool = False) -> str:
    """Write table.md, table.csv, accuracy.png, interventions.csv / .png, policies.png (models
    with several policies) and, with ``curves``, losses.png into ``out_dir``; return the markdown.

    Args:
        records: The runs' records (``RunStore.records()``).
        specs: The benchmarks they belong to.
        out_dir: Where the tables and plots go.
        select: The validation metric that picks each model's sweep point.
        curves: Also plot every run's per-epoch losses.

    Returns:
        The compact summary printed at the end of ``conceptlab bench``.

    Examples:
        >>> import pathlib, tempfile
        >>> from conceptlab.bench import parse_spec, run_grid, write_reports
        >>> spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": ["cbm-logit"], "seeds": 1,
        ...                    "train": {"max_epochs": 2}, "evaluation": {"intervention_policies": ["random"]}}, "tiny")
        >>> out = pathlib.Path(tempfile.mkdtemp())
        >>> summary = write_reports(run_grid([spec], out, workers=1, progress=False).records(), [spec], out)
        >>> sorted(path.name for path in out.glob("table.*"))
        ['table.csv', 'table.md']
    """
    rows = table_rows(records, specs, select)
    markdown = markdown_table(rows, specs, select)
    write_atomic(out_dir / "table.md", markdown)
    write_atomic(out_dir / "table.csv", csv_table(rows))
    accuracy_plot(rows, specs, out_dir / "accuracy.png")
    if any(r.aucs for r in rows):
        write_atomic(out_dir / "interventions.csv", intervention_csv(rows))
    intervention_plot(rows, specs, out_dir / "interventions.png")
    policy_plot(rows, out_dir / "policies.png")
    if curves:
        loss_plot(records, rows, specs, out_dir / "losses.png")
    return markdown


def terminal_summary(records: list[dict[str, Any]], specs: list[BenchSpec], out_dir: Path,
                     select: str = "val_task_accuracy") -> str:
    """What a bench prints when it ends: per benchmark, the model table's main columns and each
    concept model's best deployable intervention policy; the full tables are in ``out_dir``."""
    rows = table_rows(records, specs, select)
    out = io.StringIO()
    for spec in specs:
        cells = [r for r in rows if r.benchmark == spec.name]
        task, header = _task_column(cells)
        out.write(f"## {spec.name}: {header} on the test split, % (mean ± std over seeds)\n\n")
        published = any(r.reference_task_accuracy is not None for r in cells)
        out.write(f"| model | {header} " + ("| published " if published else "")
                  + "| concept accuracy | CAS | epochs | runs |\n|---|---|" + ("---|" if published else "") + "---|---|---|---|\n")
        for r in cells:
            model = f"{r.model} ({_point(r.chosen)})" if r.chosen else r.model
            runs = _runs_cell(r)
            reference = f"| {_opt(r.reference_task_accuracy)} " if published else ""
            out.write(f"| {model} | {_fmt(r.metrics[task])} {reference}"
                      f"| {_fmt(r.metrics['concept_accuracy'])} | {_fmt(r.metrics['concept_alignment'])} "
                      f"| {_opt(r.epochs, 0)} | {runs} |\n")
        _rules_section(out, cells)
        best = [(r, _best_policy(r)) for r in cells]
        best = [(r, name) for r, name in best if name]
        if best:
            out.write("\nBest deployable intervention policy per model (AUC %; accuracy with none -> all groups corrected):\n")
            for r, name in best:
                mean = r.curves[name][0]
                out.write(f"  {r.model}: {name}, AUC {_fmt(r.aucs[name])} ({mean[0]:.2f} -> {mean[-1]:.2f})\n")
        out.write("\n")
    out.write(f"Full tables (every metric, policy and competence): {out_dir / 'table.md'}; "
              f"plots: {out_dir / 'accuracy.png'}, {out_dir / 'interventions.png'}\n")
    return out.getvalue()


def _best_policy(row: Row) -> str | None:
    """The full-competence policy with the highest mean AUC among those that read no labels."""
    names = [n for n in row.aucs if "@" not in n and not uses_labels(n)]
    return max(names, key=lambda n: row.aucs[n][0]) if names else None


def policy_plot(rows: list[Row], path: Path, min_policies: int = 3) -> bool:
    """One panel per (benchmark, model) with at least ``min_policies`` curves at full competence:
    a line per policy, labelled with its AUC and its cost per sample (dashed: reads labels)."""
    panels = [r for r in rows if len([n for n in r.curves if "@" not in n]) >= min_policies]
    if not panels:
        return False
    plt = pyplot()
    columns = min(3, len(panels))
    lines = -(-len(panels) // columns)
    fig, axes = plt.subplots(lines, columns, figsize=(5.4 * columns, 4.0 * lines), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, r in zip(axes.flat, panels):
        names = [n for n in r.curves if "@" not in n]
        for k, name in enumerate(names):
            mean, std = r.curves[name]
            xs = [i / (len(mean) - 1) for i in range(len(mean))]
            auc = r.aucs.get(name)
            label = f"{name}: AUC {auc[0]:.1f}" + (f", {_cost(r.costs[name])}" if name in r.costs else "")
            ax.plot(xs, mean, "--" if uses_labels(name) else "-", color=colours(k % 10), lw=1.4, label=label)
            ax.fill_between(xs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=colours(k % 10), alpha=0.12)
        ax.set_title(f"{r.benchmark}: {r.model}", fontsize=10)
        ax.set_xlabel("fraction of concept groups corrected")
        ax.set_ylabel("task accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def loss_plot(records: list[dict[str, Any]], rows: list[Row], specs: list[BenchSpec], path: Path) -> None:
    """Per benchmark, the mean training (dashed) and validation (solid) loss per epoch of each
    model's reported runs; the stages of sequential and independent recipes follow each other."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(specs), figsize=(5.2 * len(specs), 3.8), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, spec in zip(axes[0], specs):
        hashes = {r.model: _row_hash(r, spec) for r in rows if r.benchmark == spec.name}
        for k, (model, config_hash) in enumerate(hashes.items()):
            runs = [r for r in records if r["benchmark"] == spec.name and r["model"] == model and r["config_hash"] == config_hash
                    and r.get("history")]
            for kind, style in (("train_loss", "--"), ("val_loss", "-")):
                series = [[v for stage in r["history"].values() for v in stage[kind]] for r in runs]
                if not series:
                    continue
                length = max(len(s) for s in series)
                mean = [statistics.fmean(s[i] for s in series if i < len(s)) for i in range(length)]
                ax.plot(range(1, length + 1), mean, style, color=colours(k % 10), lw=1.2,
                        label=model if kind == "val_loss" else None)
        ax.set_title(spec.name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (dashed: training, solid: validation)")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)


def _row_hash(row: Row, spec: BenchSpec) -> str:
    return (spec.at(row.chosen) if row.chosen else spec).config_hash()
