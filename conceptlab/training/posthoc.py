"""The posthoc recipe without Lightning: a PCBM's sparse head, fitted exactly on the training distances, and
PCBM-h's residual trained as the PCBM authors do."""

from __future__ import annotations

import torch

from ..datasets.base import ConceptDataset
from ..models.base import encode_all
from ..models.heads import task_loss
from ..models.pcbm import PosthocCBM
from ..runtime import evaluating, seeded
from .config import PosthocConfig
from .elastic_net import ElasticNetFit, fit_elastic_net


def check_posthoc(model: object, recipe: str) -> None:
    """A PCBM trains with the posthoc recipe only, and the posthoc recipe trains PCBMs only."""
    if isinstance(model, PosthocCBM) and recipe != "posthoc":
        raise ValueError(f"a PosthocCBM trains with recipe='posthoc' (its concept bank is fixed); got recipe={recipe!r}")
    if recipe == "posthoc" and not isinstance(model, PosthocCBM):
        raise ValueError(f"recipe 'posthoc' trains a PosthocCBM (conceptlab.models.PosthocCBM); got {type(model).__name__}")
    if isinstance(model, PosthocCBM) and not model.bank_fitted:
        raise ValueError("this PCBM has no concept bank: build it with pcbm(..., bank=bank) or call set_bank(bank), "
                         "e.g. with conceptlab.concepts.bank_from_labels(...)")


@torch.no_grad()
def fit_sparse_head(model: PosthocCBM, train: ConceptDataset, config: PosthocConfig) -> ElasticNetFit:
    """Solve the elastic-net head on the training split's concept distances and write it into ``model``."""
    with evaluating(model):
        distances = model.distances(encode_all(model, train.x))
    with torch.enable_grad():
        solution = fit_elastic_net(distances, train.y.to(distances.device), model.head.out_features, lam=config.lam,
                                   l1_ratio=config.l1_ratio, max_iter=config.max_iter, tol=config.tol)
    model.head.weight.copy_(solution.weight)
    model.head.bias.copy_(solution.bias)
    return solution


AUTHORS_RESIDUAL = {"epochs": 20, "lr": 0.01, "batch_size": 64, "l2": 0.001}  # the PCBM authors' train_pcbm_h.py defaults


def fit_residual_as_authors(model: PosthocCBM, train: ConceptDataset, seed: int) -> list[float]:
    """Train PCBM-h's residual as the authors' train_pcbm_h.py: a freshly initialised linear layer,
    Adam, cross-entropy plus 0.001 times the mean squared residual weight, a fixed number of
    epochs, the last one kept (no validation). Returns each epoch's mean training loss."""
    if model.residual is None:
        raise ValueError("only a hybrid PCBM (hybrid=True) has a residual to train")
    settings = AUTHORS_RESIDUAL
    with seeded(seed):
        model.residual.reset_parameters()
        with evaluating(model), torch.no_grad():
            embeddings = encode_all(model, train.x)
            concept_logits = model.head(model.distances(embeddings))  # the frozen PCBM part
        y = train.y.to(embeddings.device)
        optimizer = torch.optim.Adam(model.residual.parameters(), lr=settings["lr"])
        losses = []
        for _ in range(settings["epochs"]):
            order = torch.randperm(len(y), device=embeddings.device)
            total = 0.0
            for start in range(0, len(y), settings["batch_size"]):
                rows = order[start : start + settings["batch_size"]]
                with torch.enable_grad():
                    logits = concept_logits[rows] + model.residual(embeddings[rows])
                    loss = task_loss(logits, y[rows]) + settings["l2"] * model.residual.weight.pow(2).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                total += loss.detach().item() * len(rows)
            losses.append(round(total / len(y), 6))
    return losses
