import logging
import warnings

import pytest
import torch


@pytest.fixture(autouse=True)
def _quiet_and_single_threaded():
    torch.set_num_threads(1)
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"lightning\..*")
        yield


@pytest.fixture(scope="session")
def noisy():
    """The noisy-concepts splits (900 samples), shared by the policy tests."""
    from .noisy_concepts import noisy_concepts

    return noisy_concepts(n=900)


@pytest.fixture(scope="session")
def small_models(noisy):
    """A sigmoid CBM, a CEM and an IntCEM on the noisy fixture (trained briefly)."""
    from conceptlab.models import cbm, cem, intcem
    from conceptlab.training import TrainConfig, fit, seeded

    config = TrainConfig(max_epochs=8, device="cpu", batch_size=128, early_stopping_patience=0)
    with seeded(0):
        models = {
            "cbm": cbm(in_features=20, n_concepts=12, n_classes=4, hidden=(16,)),
            "cem": cem(in_features=20, n_concepts=12, n_classes=4, embedding_size=4, latent_dim=16, hidden=(16,)),
            "intcem": intcem(in_features=20, n_concepts=12, n_classes=4, units=noisy.info.group_matrix(), embedding_size=4, latent_dim=16, hidden=(16,),
                             policy_hidden=(16,)),
        }
    for name, model in models.items():
        fit(model, noisy, "intcem" if name == "intcem" else "joint", config=config)
        model.eval()
    return models
