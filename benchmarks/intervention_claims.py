"""Check the intervention papers' qualitative claims on the result folders of `conceptlab bench`.

    conceptlab bench xor trig dot --out results/lab && conceptlab bench cub100 --root CUB --out results/lab-cub
    python benchmarks/intervention_claims.py results/lab results/lab-cub

Claims (full competence, intervention AUC %, mean over seeds):
1. IntCEM with its learned policy (greedy, and sampled as the authors evaluate it) above CEM under
   random and uncertainty, at no-intervention accuracy equal to CEM's or at most 1 point below
   (Espinosa Zarlenga et al., NeurIPS 2023).
2. ECTP and EUDTP above random for every CBM (Shin et al., ICML 2023).
3. The greedy oracle above every other policy (its averaged variant oracle-mean aside), for every model.
Prints one line per check with the numbers and whether it holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from conceptlab.bench.report import Row, table_rows
from conceptlab.bench.runner import recorded_specs
from conceptlab.bench.store import RunStore


def rows_of(folder: Path) -> list[Row]:
    return table_rows(RunStore(folder / "runs.jsonl").records(), recorded_specs(folder))


def auc(row: Row, policy: str) -> float | None:
    value = row.aucs.get(policy)
    return None if value is None else value[0]


def check(rows: list[Row]) -> list[tuple[str, bool]]:
    lines = []
    for dataset in dict.fromkeys(r.benchmark for r in rows):
        models = {r.model: r for r in rows if r.benchmark == dataset}
        intcem, cem = models.get("intcem"), models.get("cem")
        for variant in ("learned", "learned-sample"):
            if not (intcem and cem and auc(intcem, variant) is not None):
                continue
            learned, accuracy_gap = auc(intcem, variant), intcem.metrics["task_accuracy"][0] - cem.metrics["task_accuracy"][0]
            for policy in ("random", "uncertainty"):
                theirs = auc(cem, policy)
                lines.append((f"{dataset}: IntCEM {variant} {learned:.2f} > CEM {policy} {theirs:.2f} "
                              f"(accuracy IntCEM - CEM {accuracy_gap:+.2f})", learned > theirs and accuracy_gap >= -1.0))
        for model, row in models.items():
            if model.startswith("cbm") and auc(row, "random") is not None:
                for policy in ("ectp", "eudtp"):
                    if auc(row, policy) is not None:
                        lines.append((f"{dataset}: {model} {policy} {auc(row, policy):.2f} > random {auc(row, 'random'):.2f}",
                                      auc(row, policy) > auc(row, "random")))
            oracle = auc(row, "oracle")
            others = {p: v[0] for p, v in row.aucs.items() if "@" not in p and p not in ("oracle", "oracle-mean")}
            if oracle is not None and others:
                best = max(others, key=others.get)
                lines.append((f"{dataset}: {model} oracle {oracle:.2f} >= best other ({best}) {others[best]:.2f}",
                              oracle >= others[best]))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    args = parser.parse_args()
    lines = [line for folder in args.folders for line in check(rows_of(folder))]
    for text, holds in lines:
        print(f"{'holds ' if holds else 'FAILS '} {text}")
    print(f"{sum(h for _, h in lines)} of {len(lines)} checks hold")


if __name__ == "__main__":
    main()
