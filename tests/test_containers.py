import pytest
import torch

from conceptlab.datasets import ConceptDataset, ConceptInfo, split_dataset
from conceptlab.training.data import TensorBatches

INFO = ConceptInfo(("a", "b"), ("no", "yes"))


def _data(n=10):
    return ConceptDataset(torch.randn(n, 3), torch.randint(0, 2, (n, 2)), torch.randint(0, 2, (n,)), INFO)


def test_user_tensors_are_wrapped_and_split():
    s = split_dataset(_data(100), (0.7, 0.1, 0.2), seed=0)
    assert (len(s.train), len(s.val), len(s.test)) == (70, 10, 20)
    assert s.info is INFO


@pytest.mark.parametrize(
    "x, c, y, message",
    [
        (torch.randn(10, 3), torch.zeros(9, 2), torch.zeros(10), r"c must have shape \(N, n_concepts\)"),
        (torch.randn(10, 3), torch.zeros(10, 2), torch.zeros(10, 1), r"y must have shape \(N,\)"),
        (torch.randn(10, 3), torch.zeros(10, 3), torch.zeros(10), "c has 3 concepts but info names 2"),
        (torch.full((10, 3), float("nan")), torch.zeros(10, 2), torch.zeros(10), "x contains NaN"),
        (torch.randn(10, 3), torch.full((10, 2), 2.0), torch.zeros(10), r"c must hold concept labels in \[0, 1\]"),
        (torch.randn(10, 3), torch.zeros(10, 2), torch.full((10,), 5), r"class indices in \[0, 1\]"),
    ],
)
def test_bad_tensors_raise_clear_errors(x, c, y, message):
    with pytest.raises(ValueError, match=message):
        ConceptDataset(x, c, y, INFO)


def test_groups_must_cover_every_concept_once():
    with pytest.raises(ValueError, match="cover each of the 2 concepts exactly once"):
        ConceptInfo(("a", "b"), ("no", "yes"), {"g": (0,)})
    info = ConceptInfo(("a", "b", "c"), ("no", "yes"), {"g1": (0, 2), "g2": (1,)})
    assert info.group_matrix().tolist() == [[True, False, True], [False, True, False]]
    assert ConceptInfo.from_dict(info.to_dict()) == info


def test_tensor_batches_cover_all_samples_once_per_epoch():
    data = _data(10)
    batches = TensorBatches(data, batch_size=4, shuffle=True, seed=0)
    assert len(batches) == 3
    for _ in range(2):
        seen = torch.cat([x for x, _, _ in batches])
        assert torch.equal(seen[:, 0].sort().values, data.x[:, 0].sort().values)
