"""A dataset where interventions matter: concepts seen through noise of different strength.

12 binary concepts in 4 groups of 3; the class (4 classes) is the argmax of a fixed linear map of
the concepts; the input shows every concept with its own noise level (some nearly hidden) plus
distractor dimensions. A model predicts the concepts imperfectly, so which concepts a person
corrects first changes the accuracy.
"""

import torch

from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset


def noisy_concepts(n: int = 2400, seed: int = 0, n_classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    k = 12
    c = (torch.rand(n, k, generator=generator) < 0.5).float()
    mapping = torch.randn(k, n_classes, generator=torch.Generator().manual_seed(123))
    y = (c @ mapping).argmax(1)
    noise = torch.linspace(0.3, 2.0, k)
    x = torch.cat([2 * c - 1 + noise * torch.randn(n, k, generator=generator), torch.randn(n, 8, generator=generator)], 1)
    info = ConceptInfo(
        [f"c{i}" for i in range(k)], [f"class{j}" for j in range(n_classes)],
        {f"g{g}": (g, g + 4, g + 8) for g in range(4)},
    )
    return split_dataset(ConceptDataset(x, c, y, info), seed=seed)
