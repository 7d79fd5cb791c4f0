"""CCE speed: batched conceptlab solver vs the reference's one-sample-at-a-time loop, same run.

Setting of the issue: a 170-concept bank on 512-d embeddings, a linear head, 100 SGD steps.
The per-sample loop re-creates the reference's structure (an ``nn.Parameter`` of weights and a
fresh ``torch.optim.SGD`` per sample, projection after each step) with the published objective;
it is compared with ``CCE.published`` (the same loss and steps, batched), and conceptlab's
default solver (cross-entropy of logits, proximal L1) is timed beside them.

    python benchmarks/cce_speed.py [--samples 1000] [--classes 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from conceptlab.concepts import CAVBank
from conceptlab.concepts.cce import CCE, concept_box


def synthetic_bank(concepts: int, dim: int, examples: int = 50, seed: int = 0) -> CAVBank:
    """A bank fitted on Gaussian concept clusters (each shifted along its own random direction)."""
    generator = torch.Generator().manual_seed(seed)
    shifts = torch.randn(concepts, dim, generator=generator)
    negatives = torch.randn(examples, dim, generator=generator)
    sets = {"random": negatives}
    for k in range(concepts):
        sets[f"c{k}"] = torch.randn(examples, dim, generator=generator) + 0.3 * shifts[k]
    return CAVBank(seed=seed).fit(sets, [(f"c{k}", "random") for k in range(concepts)])


def per_sample_loop(bank: CAVBank, head: nn.Module, z: torch.Tensor, targets: torch.Tensor, steps: int) -> torch.Tensor:
    """The reference's structure and objective: one optimisation per sample, softmax then cross-entropy."""
    results = []
    for i in range(z.shape[0]):
        box = concept_box(bank, z[i : i + 1], margin_means="sign")
        w = nn.Parameter(torch.zeros(1, box.steps.shape[0]))
        optimizer = torch.optim.SGD([w], lr=0.01, momentum=0.9)
        for _ in range(steps):
            optimizer.zero_grad()
            probabilities = head(z[i : i + 1] + w @ box.steps).softmax(1)
            k = w.shape[1]
            loss = F.cross_entropy(probabilities, targets[i : i + 1]) + 0.1 * w.norm(p=1) / k + 0.01 * w.norm(p=2) / k
            loss.backward()
            optimizer.step()
            with torch.no_grad():
                w.copy_(torch.clamp(w, box.lower, box.upper))
        results.append(w.detach())
    return torch.cat(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--loop-samples", type=int, default=100, help="samples timed with the per-sample loop")
    parser.add_argument("--concepts", type=int, default=170)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    bank = synthetic_bank(args.concepts, args.dim)
    head = nn.Linear(args.dim, args.classes).eval()
    z = torch.randn(args.samples, args.dim)
    targets = torch.randint(0, args.classes, (args.samples,))
    CCE(bank, head, steps=2).explain(z[:8], targets[:8])  # warm-up

    start = time.perf_counter()
    result = CCE.published(bank, head, steps=args.steps).explain(z, targets)
    batched = args.samples / (time.perf_counter() - start)
    start = time.perf_counter()
    default = CCE(bank, head, steps=args.steps).explain(z, targets)
    default_speed = args.samples / (time.perf_counter() - start)
    n = min(args.loop_samples, args.samples)
    start = time.perf_counter()
    looped_weights = per_sample_loop(bank, head, z[:n], targets[:n], args.steps)
    looped = n / (time.perf_counter() - start)
    gap = (looped_weights - result.weights[:n]).abs().max().item()
    print(f"bank {args.concepts} concepts x {args.dim}-d, linear head to {args.classes} classes, {args.steps} steps, "
          f"{args.threads} threads")
    print(f"conceptlab CCE.published, batched: {batched:8.1f} samples/s ({args.samples} samples, "
          f"success {result.success.float().mean():.2f})")
    print(f"per-sample loop (published):       {looped:8.1f} samples/s ({n} samples)")
    print(f"speed-up: {batched / looped:.1f}x; largest weight difference between the two: {gap:.2e}")
    print(f"conceptlab CCE defaults, batched:  {default_speed:8.1f} samples/s (success {default.success.float().mean():.2f}, "
          f"median support {default.support.float().median():.0f} of {args.concepts})")


if __name__ == "__main__":
    main()
