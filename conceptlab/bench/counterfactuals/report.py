"""Tables and plot of the planted-spurious-concept benchmark."""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from ...atomic import write_atomic
from ...plotting import pyplot, save_figure
from .settings import METHODS, CounterfactualSpec

METRICS = ("precision_at_3", "mean_rank", "success_rate", "seconds_per_sample")
SOLVERS = tuple(m for m in METHODS if m.startswith("cce"))  # methods whose explanations have a support and a success


def _current(records: list[dict[str, Any]], spec: CounterfactualSpec) -> list[dict[str, Any]]:
    config_hash = spec.config_hash()
    total = len(spec.scenario_list())
    return sorted((r for r in records if r["config_hash"] == config_hash and r.get("status") == "ok"
                   and r["scenario"] < total), key=lambda r: r["scenario"])


def _mean_std(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{scale * statistics.fmean(values):.{digits}f} ± {scale * std:.{digits}f}"


def summary(records: list[dict[str, Any]], spec: CounterfactualSpec, kind: str = "standard") -> dict[str, dict[str, Any]]:
    """Method -> metric -> per-scenario values over the scenarios of ``kind`` with mistakes, plus the
    image-level ``support`` (every explanation's size) and ``success`` (fraction of all images)."""
    rows = [r for r in _current(records, spec) if r["kind"] == kind and r.get("mistakes")]
    result = {}
    for m in METHODS:
        mine = [r for r in rows if r["method"] == m]
        stats: dict[str, Any] = {k: [r[k] for r in mine if r.get(k) is not None] for k in METRICS}
        stats["support"] = [n for r in mine for n in r.get("supports", [])]
        images = sum(r["mistakes"] for r in mine)
        stats["success"] = sum(r.get("successes", 0) for r in mine) / images if images else None
        result[m] = stats
    return result


def _method_table(stats: dict[str, dict[str, Any]], concepts: int) -> list[str]:
    lines = ["| method | Precision@3 | mean rank of S | counterfactual reaches the class (images) | "
             f"concepts per explanation, median [max] (of {concepts}) | ms / image |",
             "|---|---|---|---|---|---|"]
    for m in METHODS:
        s = stats[m]
        solver = m in SOLVERS and s["support"]
        success = f"{s['success']:.3f}" if solver and s["success"] is not None else "n/a"
        support = f"{statistics.median(s['support']):g} [{max(s['support'])}]" if solver else "n/a"
        lines.append(f"| {m} | {_mean_std(s['precision_at_3'], digits=3)} | {_mean_std(s['mean_rank'])} | {success} | "
                     f"{support} | {_mean_std(s['seconds_per_sample'], scale=1000, digits=3)} |")
    return lines


def write_counterfactual_reports(records: list[dict[str, Any]], spec: CounterfactualSpec, out: Path) -> str:
    """Write table.md, table.csv and precision.png; return the markdown."""
    rows = _current(records, spec)
    concepts = rows[0]["concepts"] if rows else 0
    scenarios = sorted({r["scenario"] for r in rows})
    standard = [r for r in rows if r["method"] == "cce" and r["kind"] == "standard" and r["mistakes"]]
    lines = [
        f"# {spec.name}: planted spurious concepts ({len(scenarios)} scenarios, {concepts} concepts in the bank; "
        f"chance Precision@3 = {3 / concepts if concepts else 0:.3f})",
        "",
        f"Standard scenarios: mean ± std over the {len(standard)} scenarios with misclassified images. "
        f"cce: the configured solver ({spec.solver.objective} objective, {spec.solver.l1_step} L1, alpha "
        f"{spec.solver.alpha:g}); cce-reference: the same with the published objective (softmax, then "
        "cross-entropy); cce-published: the published solver as a whole. A concept is in an explanation when "
        f"|w| > {spec.solver.support_threshold:g}; concepts with weight 0 tie, and ties count against S in its rank. "
        "Baselines change nothing, so success is n/a.",
        "",
        *_method_table(summary(records, spec), concepts),
    ]
    kinds = [k for k in ("part strength", "faint") if any(r.get("kind") == k for r in rows)]
    for kind in kinds:
        lines += ["", f"Harder scenarios ({kind}):", "", *_method_table(summary(records, spec, kind), concepts)]
    lines += ["", "| scenario | kind | class | planted | concept S (CAV acc) | mistakes / images | head acc % | "
              + " | ".join(f"{m} P@3 | {m} rank" for m in METHODS) + " |",
              "|---|---|---|---|---|---|---|" + "---|---|" * len(METHODS)]
    for i in scenarios:
        by_method = {r["method"]: r for r in rows if r["scenario"] == i}
        first = next(iter(by_method.values()))
        cells = []
        for m in METHODS:
            r = by_method.get(m, {})
            cells += [f"{r['precision_at_3']:.2f}" if r.get("precision_at_3") is not None else "-",
                      f"{r['mean_rank']:.1f}" if r.get("mean_rank") is not None else "-"]
        accuracy = first.get("concept_cav_accuracy")
        concept = f"{first['concept']} ({accuracy:.2f})" if accuracy is not None else first["spurious"]
        lines.append(f"| {i} | {first['kind']} | {first['class']} | {first['planted']} | "
                     f"{concept} | {first['mistakes']} / {first['class_test_images']} | {100 * first['head_accuracy']:.1f} | "
                     + " | ".join(cells) + " |")
    markdown = "\n".join(lines) + "\n"
    write_atomic(out / "table.md", markdown)
    buffer = io.StringIO()
    fields = ["scenario", "kind", "class", "planted", "concept", "concept_cav_accuracy", "method", "mistakes",
              "class_test_images", "head_accuracy", "successes", *METRICS]
    writer = csv.DictWriter(buffer, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(out / "table.csv", buffer.getvalue())
    if rows:
        precision_plot(rows, out / "precision.png", spec.name)
    return markdown


def precision_plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Precision@3 of each method per scenario (grouped bars)."""
    plt = pyplot()
    scenarios = sorted({r["scenario"] for r in rows})
    labels = [next(f"{r['planted']}\n{r['class'].split('.')[-1][:14]}" for r in rows if r["scenario"] == i)
              for i in scenarios]
    width = 0.8 / len(METHODS)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.75 * len(scenarios)), 3.8))
    for j, m in enumerate(METHODS):
        values = [next((r.get("precision_at_3") or 0.0 for r in rows if r["scenario"] == i and r["method"] == m), 0.0)
                  for i in scenarios]
        ax.bar([k + j * width for k in range(len(scenarios))], values, width, label=m)
    ax.set_xticks([k + width for k in range(len(scenarios))], labels, fontsize=7, rotation=45, ha="right")
    ax.set_ylim(0, 1.25)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_ylabel("Precision@3 of the planted concept")
    ax.set_title(f"{title}: is the planted spurious concept among the top 3 to add?", fontsize=10)
    ax.legend(fontsize=8, ncol=len(METHODS), loc="upper center")
    fig.tight_layout()
    save_figure(fig, path)
