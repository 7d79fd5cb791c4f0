"""The posthoc recipe's first stage: a PCBM's sparse head, fitted exactly on the training distances."""

from __future__ import annotations

import torch

from ..datasets.base import ConceptDataset
from ..models.base import encode_all
from ..models.pcbm import PosthocCBM
from ..runtime import evaluating
from .config import PosthocConfig
from .elastic_net import ElasticNetFit, fit_elastic_net


def check_posthoc(model: object, recipe: str) -> None:
    """A PCBM trains with the posthoc recipe only, and the posthoc recipe trains PCBMs only."""
    if isinstance(model, PosthocCBM) and recipe != "posthoc":
        raise ValueError(f"a PosthocCBM trains with recipe='posthoc' (its concept bank is fixed); got recipe={recipe!r}")
    if recipe == "posthoc" and not isinstance(model, PosthocCBM):
        raise ValueError(f"recipe 'posthoc' trains a PosthocCBM (conceptlab.models.PosthocCBM); got {type(model).__name__}")
    if isinstance(model, PosthocCBM) and not model.bank_fitted:
        raise ValueError("this PCBM has no concept bank: build it with PosthocCBM(bank, n_classes) or call set_bank(bank), "
                         "e.g. with conceptlab.concepts.bank_from_labels(...)")


@torch.no_grad()
def fit_sparse_head(model: PosthocCBM, train: ConceptDataset, config: PosthocConfig) -> ElasticNetFit:
    """Solve the elastic-net head on the training split's concept distances and write it into ``model``."""
    with evaluating(model):
        distances = model.distances(encode_all(model, train.x))
    with torch.enable_grad():
        solution = fit_elastic_net(distances, train.y.to(distances.device), model.head.out_features, config.lam,
                                   config.l1_ratio, config.max_iter, config.tol)
    model.head.weight.copy_(solution.weight)
    model.head.bias.copy_(solution.bias)
    return solution
