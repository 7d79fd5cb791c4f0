import numpy as np
import pytest
import torch

from conceptlab.datasets import dot, load_dataset, make_synthetic, trig, xor


def _inverse_sin_plus_identity(v: np.ndarray) -> np.ndarray:
    """Solve sin(a) + a = v by bisection (the map is increasing)."""
    lo, hi = v - 1.5, v + 1.5
    for _ in range(80):
        mid = (lo + hi) / 2
        too_big = np.sin(mid) + mid > v
        hi = np.where(too_big, mid, hi)
        lo = np.where(too_big, lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("name, d, k", [("xor", 2, 2), ("trig", 7, 3), ("dot", 4, 2)])
def test_shapes_and_split_sizes(name, d, k):
    s = make_synthetic(name, size=3000, seed=0)
    assert [len(s.train), len(s.val), len(s.test)] == [2100, 300, 600]
    assert s.train.x.shape == (2100, d) and s.train.c.shape == (2100, k)
    assert s.info.n_concepts == k and s.info.n_classes == 2
    assert s.info.concept_groups == {n: (i,) for i, n in enumerate(s.info.concept_names)}


def _all(s):
    return (torch.cat([s.train.x, s.val.x, s.test.x]).double().numpy(),
            torch.cat([s.train.c, s.val.c, s.test.c]).numpy(),
            torch.cat([s.train.y, s.val.y, s.test.y]).numpy())


def test_xor_rule():
    x, c, y = _all(xor(seed=3))
    assert ((x >= 0) & (x <= 1)).all()
    np.testing.assert_array_equal(c, x > 0.5)
    np.testing.assert_array_equal(y, (x[:, 0] > 0.5) ^ (x[:, 1] > 0.5))
    assert 0.45 < y.mean() < 0.55


def test_trig_rule_uses_the_official_label_and_std_2():
    x, c, y = _all(trig(seed=4))
    # sin(a) + a is increasing with value 0 at 0, so its sign is the sign of a
    np.testing.assert_array_equal(c, x[:, [0, 2, 4]] > 0)
    h = _inverse_sin_plus_identity(x[:, [0, 2, 4]])  # float32 inputs: recovered to ~1e-2 near a = pi
    np.testing.assert_allclose(np.cos(h) + h, x[:, [1, 3, 5]], atol=0.05)
    np.testing.assert_allclose((h**2).sum(1), x[:, 6], rtol=0.02)
    clear = np.abs(h.sum(1) - 1) > 0.05
    np.testing.assert_array_equal(y[clear], h.sum(1)[clear] > 1)
    assert 1.85 < h.std() < 2.15
    assert 0.34 < y.mean() < 0.44  # P(N(0, 12) > 1) = 0.387


def test_dot_rule():
    x, c, y = _all(dot(seed=5))
    v1 = (x[:, :2] + x[:, 2:]) / 2
    v3 = (x[:, :2] - x[:, 2:]) / 2
    np.testing.assert_array_equal(c[:, 0], v1.sum(1) > 0)
    np.testing.assert_array_equal(c[:, 1], -v3.sum(1) > 0)
    np.testing.assert_array_equal(y, (v1 * v3).sum(1) > 0)
    assert 1.85 < v1.std() < 2.15 and 1.85 < v3.std() < 2.15
    assert 0.45 < y.mean() < 0.55  # v3 is drawn independently of v1: the task is not constant


def test_seeds_reproduce_and_differ_without_touching_global_rng():
    np_state = np.random.get_state()[1].copy()
    torch_state = torch.get_rng_state().clone()
    a, b, c = xor(seed=1), xor(seed=1), xor(seed=2)
    assert torch.equal(a.train.x, b.train.x)
    assert not torch.allclose(a.train.x, c.train.x)
    np.testing.assert_array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(torch.get_rng_state(), torch_state)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(ValueError, match="unknown synthetic dataset 'xnor'.*xor, trig, dot"):
        make_synthetic("xnor")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset({"name": "mnist"}, seed=0)
    with pytest.raises(ValueError, match=r"dataset.sizes: unknown key.*known: hidden_concepts, kept_concept_groups, missing_concept_labels, name, size"):
        load_dataset({"name": "xor", "sizes": 10}, seed=0)


def test_tensor_and_image_datasets_share_one_protocol(tmp_path):
    from PIL import Image

    from conceptlab.datasets import ConceptDataset
    from conceptlab.datasets.images import ImageConceptDataset
    from conceptlab.info import ConceptInfo

    info = ConceptInfo(("a", "b"), ("no", "yes"))
    c, y = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([1, 0])
    tensors = ConceptDataset(torch.randn(2, 3), c, y, info)
    for i in range(2):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{i}.png")
    images = ImageConceptDataset([tmp_path / "0.png", tmp_path / "1.png"], c, y, info)
    assert torch.equal(tensors.features, tensors.x) and images.features is None
    x, ci, yi = tensors[1]
    assert torch.equal(x, tensors.x[1]) and torch.equal(ci, c[1]) and int(yi) == 0
    _, ci, yi = images[1]
    assert torch.equal(ci, c[1]) and int(yi) == 0
    assert len(tensors) == len(images) == 2
