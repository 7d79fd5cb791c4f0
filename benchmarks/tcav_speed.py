"""TCAV end to end, conceptlab against captum in the same run (issue 5's setting).

    pip install captum
    python benchmarks/tcav_speed.py [--estimator svm]
    python benchmarks/tcav_speed.py --only-conceptlab --inputs 640   # peak memory, 10x the inputs

ResNet-18 (random init) at 112 px, layers layer2 / layer3 / layer4, 10 concepts x 50 images,
10 random sets x 50 images, 64 inputs to explain, target class 0. conceptlab: activations, CAVs
(TCAV's default estimator, or --estimator) for every concept-random pair plus random-random pairs,
gradients, scores and both significance tests. captum: TCAV.interpret on the same concept-random pairs (it has no
significance step). One process, the machine's threads for both; the two libraries alternate for
--repeats runs (default 3) after one warm-up forward, and the medians are compared. glibc is
told to keep freed memory (as the conceptlab commands do), for both libraries.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings

import torch
import torchvision

from conceptlab.concepts.cav import SOLVERS
from conceptlab.concepts.tcav import TCAV_ESTIMATOR, run_tcav
from conceptlab.runtime import keep_freed_memory

LAYERS = ["layer2", "layer3", "layer4"]


def make_data(n_concepts: int, n_random: int, per_set: int, n_inputs: int, size: int):
    g = torch.Generator().manual_seed(0)
    concepts = {}
    for i in range(n_concepts):
        pattern = torch.rand(3, 1, 1, generator=g)  # a colour tint per concept
        concepts[f"concept{i}"] = torch.rand(per_set, 3, size, size, generator=g) * 0.5 + pattern
    randoms = {f"random{r}": torch.rand(per_set, 3, size, size, generator=g) for r in range(n_random)}
    return concepts, randoms, torch.rand(n_inputs, 3, size, size, generator=g)


def run_conceptlab(model, concepts, randoms, inputs, target: int, estimator: str = TCAV_ESTIMATOR) -> float:
    start = time.perf_counter()
    run_tcav(model, LAYERS, concepts, randoms=randoms, inputs=inputs, target=target, solver=estimator, batch_size=100)
    return time.perf_counter() - start


def run_captum(model, concepts, randoms, inputs, target: int) -> float:
    from captum.concept import TCAV, Concept

    start = time.perf_counter()
    all_sets = {**concepts, **randoms}
    made = {name: Concept(i, name, [x]) for i, (name, x) in enumerate(all_sets.items())}
    experimental = [[made[c], made[r]] for c in concepts for r in randoms]
    with tempfile.TemporaryDirectory() as save_path, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        TCAV(model, LAYERS, save_path=save_path).interpret(inputs, experimental, target=target)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concepts", type=int, default=10)
    parser.add_argument("--random-sets", type=int, default=10)
    parser.add_argument("--per-set", type=int, default=50)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each library; medians reported")
    parser.add_argument("--estimator", default=TCAV_ESTIMATOR, choices=SOLVERS, help="conceptlab's CAV estimator")
    parser.add_argument("--only-conceptlab", action="store_true",
                        help="skip captum and report this process's peak memory (compare --inputs 64 with 640)")
    args = parser.parse_args()
    keep_freed_memory()  # as `conceptlab tcav` does; without it the first run pays ~2.5 s of page faults
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    data = make_data(args.concepts, args.random_sets, args.per_set, args.inputs, args.size)
    with torch.no_grad():  # warm-up: the first convolutions of a process pay for kernel selection
        model(data[2][:8])
    if args.only_conceptlab:
        ours = run_conceptlab(model, *data, target=0, estimator=args.estimator)
        print(f"conceptlab TCAV (activations + CAVs + scores + significance): {ours:.1f} s", flush=True)
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{args.inputs} inputs: peak resident memory of the process {peak:.0f} MiB")
        return
    ours, theirs = [], []
    for repeat in range(args.repeats):  # alternate, so that drifts of machine speed hit both
        ours.append(run_conceptlab(model, *data, target=0, estimator=args.estimator))
        try:
            theirs.append(run_captum(model, *data, target=0))
        except ImportError:
            print("captum is not installed: comparison skipped")
            return
        print(f"run {repeat + 1}: conceptlab {ours[-1]:.1f} s, captum {theirs[-1]:.1f} s, "
              f"ratio {theirs[-1] / ours[-1]:.1f}x", flush=True)
    ours_median, theirs_median = statistics.median(ours), statistics.median(theirs)
    print(f"conceptlab TCAV (activations + CAVs + scores + significance), median: {ours_median:.1f} s")
    print(f"captum TCAV.interpret (no significance), median: {theirs_median:.1f} s")
    print(f"captum / conceptlab (medians): {theirs_median / ours_median:.1f}x")

if __name__ == "__main__":
    main()
