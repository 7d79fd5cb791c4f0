"""Concept whitening side by side, layer level: conceptlab's whitening step against the authors' on the same batches.

    mkdir -p /tmp/cw && cd /work/.mirror/zhiCHEN96+ConceptWhitening/repo       # fetched, 2517fc3
    git show HEAD:MODELS/iterative_normalization.py > /tmp/cw/iterative_normalization.py
    python benchmarks/whitening_authors.py --authors /tmp/cw [--batches 20] [--width 16]

The authors' ``iterative_normalization_py`` (their IterNorm function, which their concept whitening
layer calls before rotating) and conceptlab's ``ConceptWhitening.whiten`` whiten the same training
batches: feature maps (B, d, 4, 4) of a fixed random convolution over random images, d = ``--width``,
with eps 1e-5 and the identity rotation, at 5 Newton iterations (conceptlab's default) and 10 (their
layer's). Reported: the largest difference between the two outputs in training mode, and between the
gradients they send back for the same upstream gradient (their hand-written backward against autograd
through conceptlab's iterations), and each one's distance from the same computation in float64. Their rotation update (``update_rotation_matrix``) moves tensors to CUDA unconditionally,
so it cannot run on this machine; conceptlab trains Q by gradient instead (docs/guide/models.md).
Evaluation-mode outputs differ by design (their running W against conceptlab's running covariance).
"""

from __future__ import annotations

import argparse
import sys
import warnings

import torch

from conceptlab.models import ConceptWhitening


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--authors", required=True, help="folder holding their iterative_normalization.py")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--width", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, args.authors)
    warnings.filterwarnings("ignore")  # their code calls torch.baddbmm with a deprecated signature
    from iterative_normalization import iterative_normalization_py

    d = args.width
    for iterations in (5, 10):
        torch.manual_seed(0)
        features = torch.nn.Conv2d(3, d, kernel_size=3, stride=2)
        ours = ConceptWhitening(d, 2, iterations=iterations).train()
        exact = ConceptWhitening(d, 2, iterations=iterations).double().train()
        running_mean, running_wm = torch.zeros(1, d, 1), torch.eye(d).expand(1, d, d).clone()
        worst = {"output": 0.0, "gradient": 0.0, "theirs vs float64": 0.0, "ours vs float64": 0.0}
        for _ in range(args.batches):
            with torch.no_grad():
                x = features(torch.randn(64, 3, 9, 9))
            theirs_in, ours_in = x.clone().requires_grad_(), x.clone().requires_grad_()
            theirs = iterative_normalization_py.apply(theirs_in, running_mean, running_wm, d, iterations, 1e-5, 0.1, True)
            mine, _ = ours.rotate(ours_in)
            with torch.no_grad():
                reference = exact.rotate(x.double())[0].float()
            upstream = torch.randn_like(theirs)
            (theirs * upstream).sum().backward()
            (mine * upstream).sum().backward()
            for key, difference in (("output", theirs - mine), ("gradient", theirs_in.grad - ours_in.grad),
                                    ("theirs vs float64", theirs - reference), ("ours vs float64", mine - reference)):
                worst[key] = max(worst[key], float(difference.detach().abs().max()))
        print(f"T = {iterations}, {args.batches} batches of (64, {d}, 4, 4), largest differences (outputs of unit variance): "
              + ", ".join(f"{key} {value:.1e}" for key, value in worst.items()))


if __name__ == "__main__":
    main()
