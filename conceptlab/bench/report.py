"""Tables (markdown, CSV) and plots of benchmark results, with published numbers beside ours."""

from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .spec import BenchSpec
from .store import write_atomic

METRICS = ("task_accuracy", "concept_accuracy", "concept_auc")


@dataclass(frozen=True)
class Row:
    """One (dataset, model) cell of the table; metrics are percentages as (mean, std) or None."""

    dataset: str
    model: str
    runs: int
    failed: int
    metrics: dict[str, tuple[float, float] | None]
    reference_task_accuracy: float | None
    epochs: float | None
    train_seconds: float | None


def _mean_std(values: list[float]) -> tuple[float, float] | None:
    values = [v for v in values if v is not None]
    if not values:
        return None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(records: list[dict[str, Any]], specs: list[BenchSpec]) -> list[Row]:
    """Aggregate the runs of the current configs, model by model in config order."""
    rows = []
    for spec in specs:
        config_hash = spec.config_hash()
        reference = (spec.reference or {}).get("task_accuracy", {})
        for model in spec.models:
            runs = [r for r in records if r["dataset"] == spec.name and r["model"] == model and r["config_hash"] == config_hash]
            ok = [r for r in runs if r.get("status") == "ok"]
            metrics = {m: _mean_std([100 * r[m] if r.get(m) is not None else None for r in ok]) for m in METRICS}
            epochs = _mean_std([r["epochs"] for r in ok])
            seconds = _mean_std([r["train_seconds"] for r in ok])
            rows.append(
                Row(spec.name, model, len(ok), len(runs) - len(ok), metrics, reference.get(model),
                    epochs[0] if epochs else None, seconds[0] if seconds else None)
            )
    return rows


def _fmt(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.2f} ± {value[1]:.2f}"


def markdown_table(rows: list[Row], specs: list[BenchSpec]) -> str:
    out = io.StringIO()
    for spec in specs:
        source = (spec.reference or {}).get("source", "published")
        out.write(f"## {spec.name}\n\nTask accuracy on the test split, % (mean ± std over seeds). Reference: {source}.\n\n")
        out.write("| model | task accuracy | reference | concept accuracy | concept AUC | epochs | train s | runs |\n")
        out.write("|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            if r.dataset != spec.name:
                continue
            ref = "" if r.reference_task_accuracy is None else f"{r.reference_task_accuracy:.2f}"
            runs = f"{r.runs}" + (f" ({r.failed} failed)" if r.failed else "")
            epochs = "" if r.epochs is None else f"{r.epochs:.0f}"
            seconds = "" if r.train_seconds is None else f"{r.train_seconds:.1f}"
            out.write(
                f"| {r.model} | {_fmt(r.metrics['task_accuracy'])} | {ref} | {_fmt(r.metrics['concept_accuracy'])} "
                f"| {_fmt(r.metrics['concept_auc'])} | {epochs} | {seconds} | {runs} |\n"
            )
        out.write("\n")
    return out.getvalue()


def csv_table(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    header = ["dataset", "model", "runs", "failed"]
    for m in METRICS:
        header += [f"{m}_mean", f"{m}_std"]
    writer.writerow(header + ["reference_task_accuracy", "epochs_mean", "train_seconds_mean"])
    for r in rows:
        values: list[Any] = [r.dataset, r.model, r.runs, r.failed]
        for m in METRICS:
            values += list(r.metrics[m]) if r.metrics[m] else ["", ""]
        values += [r.reference_task_accuracy if r.reference_task_accuracy is not None else "", r.epochs or "", r.train_seconds or ""]
        writer.writerow(values)
    return out.getvalue()


def accuracy_plot(rows: list[Row], specs: list[BenchSpec], path: Path) -> None:
    """One panel per dataset: our task accuracy (bars, std error bars) and the reference (markers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(specs), figsize=(4.5 * len(specs), 3.6), squeeze=False)
    for ax, spec in zip(axes[0], specs):
        cells = [r for r in rows if r.dataset == spec.name and r.metrics["task_accuracy"]]
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def write_reports(records: list[dict[str, Any]], specs: list[BenchSpec], out_dir: Path) -> str:
    """Write table.md, table.csv and accuracy.png into ``out_dir``; return the markdown."""
    rows = summarize(records, specs)
    markdown = markdown_table(rows, specs)
    write_atomic(out_dir / "table.md", markdown)
    write_atomic(out_dir / "table.csv", csv_table(rows))
    accuracy_plot(rows, specs, out_dir / "accuracy.png")
    return markdown
