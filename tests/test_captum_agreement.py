"""TCAV scores agree with captum's: with shared CAV weights exactly, and with each library's own CAVs on a
real concept (for irrelevant and random concepts they differ; benchmarks/captum_agreement.py measures how)."""

import random
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from conceptlab.concepts import CAVBank, capture_activations, layer_gradients, tcav_scores

captum_concept = pytest.importorskip("captum.concept")
from captum.concept._utils.classifier import Classifier  # noqa: E402

D = 32


class FixedCAV(Classifier):
    """Hands captum the CAV conceptlab fitted for the pair, instead of training its own."""

    def __init__(self, bank: CAVBank, names: dict[int, str]):
        self.bank, self.names = bank, names

    def train_and_eval(self, dataloader, **kwargs):
        ids = sorted({int(i) for _, labels in dataloader for i in labels.tolist()})
        self.ids = ids
        return {"accs": torch.tensor(1.0)}

    def weights(self):
        first, second = (self.names[i] for i in self.ids)
        pair = (first, second) if (first, second) in self.bank.pairs_ else (second, first)
        v = self.bank.directions_[self.bank.index(*pair)]
        return torch.stack([v, -v]) if pair[0] == first else torch.stack([-v, v])

    def classes(self):
        return self.ids


def _setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(OrderedDict(hidden=nn.Linear(D, 16), act=nn.Tanh(), out=nn.Linear(16, 3)))
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(D, generator=g)
    data = {"striped": torch.randn(60, D, generator=g) + 2 * u, **{f"random{r}": torch.randn(60, D, generator=g) for r in range(4)}}
    inputs = torch.randn(50, D, generator=g)
    return model, data, inputs


def _captum_scores(model, data, inputs, classifier, tmp_path):
    # captum's own classifier draws from three global generators (torch's split, Python's shuffle,
    # numpy's for sklearn's SGD): fix all three, so the result does not depend on what ran before
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    concepts = {name: captum_concept.Concept(i, name, [x]) for i, (name, x) in enumerate(data.items())}
    tcav = captum_concept.TCAV(model, ["hidden"], classifier=classifier, save_path=str(tmp_path))
    sets = [[concepts["striped"], concepts[f"random{r}"]] for r in range(4)]
    result = tcav.interpret(inputs, sets, target=1)
    return torch.stack([result[f"0-{r + 1}"]["hidden"]["sign_count"][0] for r in range(4)])


def test_same_cavs_give_captums_sign_counts(tmp_path):
    model, data, inputs = _setup()
    acts = {k: capture_activations(model, ["hidden"], v)["hidden"] for k, v in data.items()}
    bank = CAVBank().fit(acts, [("striped", f"random{r}") for r in range(4)])
    ours, _ = tcav_scores(layer_gradients(model, "hidden", inputs, target=1), bank)
    names = {i: name for i, name in enumerate(data)}
    theirs = _captum_scores(model, data, inputs, FixedCAV(bank, names), tmp_path)
    assert torch.allclose(ours, theirs.float(), atol=1e-6)


def test_own_cavs_agree_with_captums_on_a_real_concept(tmp_path):
    model, data, inputs = _setup(1)
    acts = {k: capture_activations(model, ["hidden"], v)["hidden"] for k, v in data.items()}
    bank = CAVBank().fit(acts, [("striped", f"random{r}") for r in range(4)])
    ours, _ = tcav_scores(layer_gradients(model, "hidden", inputs, target=1), bank)
    theirs = _captum_scores(model, data, inputs, None, tmp_path)
    assert abs(float(ours.mean()) - float(theirs.float().mean())) <= 0.05
