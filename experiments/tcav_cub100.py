"""TCAV demo on cub100: which CUB attributes drive a frozen-feature bird classifier towards a class?

    python experiments/tcav_cub100.py --root ../shared/data/cub100 [--target 014.Indigo_Bunting]

Concepts are CUB attributes: their examples are (EfficientNet-Lite0 features of) training images
of classes that have the attribute; random sets are random training images. The classifier is
the cub100 black box (trained here in a few seconds, or loaded with --checkpoint from a bench
run). The attributes the target class has should score high, the ones it lacks low.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from conceptlab.bench import load_spec
from conceptlab.bench.zoo import MODEL_KEYS
from conceptlab.concepts import run_tcav, tcav_plot, write_tcav_csv
from conceptlab.datasets import load_dataset
from conceptlab.models import load_model
from conceptlab.training import fit, seeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="directory holding CUB_200_2011/")
    parser.add_argument("--checkpoint", help="a cub100 blackbox checkpoint (default: train one now)")
    parser.add_argument("--target", default=None, help="class name (default: the first class)")
    parser.add_argument("--per-set", type=int, default=50)
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--out", default="results/tcav-cub100")
    args = parser.parse_args()

    spec = load_spec("cub100").with_overrides(root=args.root)
    data = load_dataset(spec.dataset, seed=0)
    if args.checkpoint:
        model, _, _ = load_model(args.checkpoint)
    else:
        key = MODEL_KEYS["blackbox"]
        with seeded(0):
            model = key.build(data.train.x.shape[1], data.info, spec.model)
        fit(model, data, key.recipe, config=spec.train)
    classes = list(data.info.task_names)
    target = classes.index(args.target) if args.target else 0
    generator = torch.Generator().manual_seed(0)

    def sample(rows: torch.Tensor) -> torch.Tensor:
        pick = rows[torch.randperm(len(rows), generator=generator)[: args.per_set]]
        return data.train.x[pick]

    profile = data.test.c[data.test.y == target][0]  # the class-level concept vector of the target
    has = torch.nonzero(profile > 0.5).flatten()[:3].tolist()
    lacks = torch.nonzero(profile < 0.5).flatten()[:3].tolist()
    concepts = {
        data.info.concept_names[a]: sample(torch.nonzero(data.train.c[:, a] > 0.5).flatten()) for a in has + lacks
    }
    randoms = {f"random{r}": sample(torch.arange(len(data.train))) for r in range(args.random_sets)}
    inputs = data.test.x[data.test.y == target]
    records = run_tcav(model, ["encoder"], concepts, randoms=randoms, inputs=inputs, target=target)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_tcav_csv(records, out / "tcav.csv")
    tcav_plot(records, out / "tcav.png", f"TCAV for {classes[target]}")
    for r in records:
        kind = "has " if data.info.concept_names.index(r["concept"]) in has else "lacks"
        print(f"{kind} {r['concept']:40s} score {r['score_mean']:.2f} ± {r['score_std']:.2f}  "
              f"p(paper) {r['p_paper']:.2g}  p(ref) {r['p_reference']:.2g}  significant {r['significant']}")
    print(f"written: {out}/tcav.csv, {out}/tcav.png")


if __name__ == "__main__":
    main()
