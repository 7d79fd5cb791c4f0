"""Oracle and niche impurity: leaky representations score worse than pure ones, and every pair
of the purity matrix is learned on its own."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from conceptlab.metrics import niche_impurity_score, oracle_impurity_score, own_representations, purity_matrix
from conceptlab.metrics.purity import batched_auc, niche_correlations
from conceptlab.models import cbm, cem

N, K = 1500, 4


def _concepts(seed: int = 0) -> torch.Tensor:
    return (torch.rand(N, K, generator=torch.Generator().manual_seed(seed)) < 0.5).float()


def _pure(c: torch.Tensor, d: int = 3) -> torch.Tensor:
    """Each representation: its own concept plus noise, nothing about the others."""
    noise = torch.randn(N, K, d, generator=torch.Generator().manual_seed(1))
    return c.unsqueeze(-1) + 0.3 * noise


def _leaky(c: torch.Tensor, d: int = 3) -> torch.Tensor:
    """Each representation also carries the next concept in its last dimension."""
    reps = _pure(c, d)
    reps[:, :, -1] = c.roll(-1, dims=1) + 0.3 * torch.randn(N, K, generator=torch.Generator().manual_seed(2))
    return reps


def test_batched_auc_equals_sklearn_with_ties():
    generator = np.random.default_rng(0)
    scores = generator.integers(0, 5, size=(6, 200)).astype(float)  # many ties
    labels = generator.integers(0, 2, size=(6, 200)).astype(float)
    labels[5] = 1.0  # one constant row: undefined
    expected = [roc_auc_score(labels[i], scores[i]) for i in range(5)]
    got = batched_auc(scores, labels)
    assert np.allclose(got[:5], expected)
    assert np.isnan(got[5])


def test_purity_matrix_finds_exactly_the_leaked_pairs():
    c = _concepts()
    pure, leaky = purity_matrix(_pure(c), c), purity_matrix(_leaky(c), c)
    assert torch.all(pure.diagonal() > 0.95) and torch.all(leaky.diagonal() > 0.95)
    off = ~torch.eye(K, dtype=torch.bool)
    assert pure[off].max() < 0.6
    leaked = torch.zeros(K, K, dtype=torch.bool)
    leaked[torch.arange(K), (torch.arange(K) + 1) % K] = True
    assert leaky[leaked].min() > 0.9
    assert leaky[off & ~leaked].max() < 0.6


def test_changing_one_representation_changes_only_its_row():
    c = _concepts()
    reps = _pure(c)
    before = purity_matrix(reps, c)
    changed = reps.clone()
    changed[:, 2] = torch.randn(N, 3, generator=torch.Generator().manual_seed(9))
    after = purity_matrix(changed, c)
    rows = torch.arange(K) != 2
    assert torch.equal(before[rows], after[rows])  # every other pair learned alone: bitwise the same
    assert after[2, 2] < 0.6 < before[2, 2]


def test_oracle_impurity_separates_pure_from_leaky_and_is_near_zero_for_the_concepts_themselves():
    c = _concepts()
    pure, leaky = oracle_impurity_score(_pure(c), c), oracle_impurity_score(_leaky(c), c)
    assert pure < 0.1
    assert leaky > pure + 0.3
    assert oracle_impurity_score(c.unsqueeze(-1), c) < 0.02


def test_correlated_concepts_are_not_impurity():
    """When c1 is a copy of c0, a representation of c0 predicting c1 is what the oracle does too."""
    c = _concepts()
    c[:, 1] = c[:, 0]
    assert oracle_impurity_score(_pure(c), c) < 0.1


def test_niche_impurity_finds_information_that_correlations_do_not_see():
    """Representation i also encodes concept i + 1 as a product of two dimensions (an XOR with a
    random sign): uncorrelated with it, so outside its niche, yet a classifier reads it there."""
    c = _concepts()
    pure = _pure(c)
    hidden = pure.clone()
    sign = torch.randint(0, 2, (N, K), generator=torch.Generator().manual_seed(3)).float() * 2 - 1
    hidden[:, :, 1] = sign
    hidden[:, :, 2] = sign * (2 * c.roll(-1, dims=1) - 1) + 0.1 * torch.randn(N, K, generator=torch.Generator().manual_seed(4))
    assert niche_correlations(hidden, c).fill_diagonal_(0).max() < 0.1
    assert niche_impurity_score(hidden, c) > niche_impurity_score(pure, c) + 0.2


def test_niche_correlations_read_the_strongest_dimension():
    c = _concepts()
    reps = torch.randn(N, K, 2, generator=torch.Generator().manual_seed(4))
    reps[:, 1, 1] = -c[:, 3]  # negative correlation counts as much as positive
    correlations = niche_correlations(reps, c)
    assert correlations[1, 3] == pytest.approx(1.0, abs=1e-4)
    assert correlations[0, 0] < 0.1


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(N, K), "need representations"),
    (torch.full((N, K, 2), float("nan")), "NaN or infinite"),
    (torch.zeros(5, K, 2), "at least 10 samples"),
])
def test_bad_inputs_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        oracle_impurity_score(bad, _concepts()[: bad.shape[0]])


def test_own_representations_of_each_model_kind():
    x = torch.randn(3, 6)
    with torch.no_grad():
        embeddings = own_representations(cem(in_features=6, n_concepts=4, n_classes=3, embedding_size=5)(x), 4)
        hybrid = own_representations(cbm(in_features=6, n_concepts=4, n_classes=3, n_extra=2)(x), 4)
    assert embeddings.shape == (3, 4, 5)
    assert hybrid.shape == (3, 4, 1)  # the hybrid's extra units belong to no concept
