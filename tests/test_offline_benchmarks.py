"""The offline benchmarks: digit arithmetic on scikit-learn's bundled digits and the correlated-concepts toy."""

import pytest
import torch

from conceptlab.bench import load_spec
from conceptlab.datasets import correlated_concepts, digits_arithmetic, load_dataset


def test_digit_pairs_carry_one_digit_per_group_and_their_sum():
    splits = digits_arithmetic(size=300, seed=1)
    for part in (splits.train, splits.val, splits.test):
        assert torch.all(part.c[:, :10].sum(1) == 1) and torch.all(part.c[:, 10:].sum(1) == 1)
        assert torch.equal(part.y, part.c[:, :10].argmax(1) + part.c[:, 10:].argmax(1))
    assert splits.info.group_names == ("left digit", "right digit") and splits.info.n_classes == 19
    parity = digits_arithmetic(size=300, task="parity", seed=1)
    assert torch.equal(parity.test.y, splits.test.y % 2)  # the same pairs, the parity of their sum


def test_no_test_image_is_seen_in_training():
    splits = digits_arithmetic(size=2000, seed=0)
    images = lambda part: {tuple(row.tolist()) for half in (part.x[:, :64], part.x[:, 64:]) for row in half}  # noqa: E731
    assert not images(splits.train) & images(splits.test)
    assert not images(splits.train) & images(splits.val)


def test_the_generators_are_reproducible_and_refuse_bad_settings():
    assert torch.equal(digits_arithmetic(size=100, seed=3).train.x, digits_arithmetic(size=100, seed=3).train.x)
    with pytest.raises(ValueError, match="choose sum or parity"):
        digits_arithmetic(task="product")
    with pytest.raises(ValueError, match="rho must be in"):
        correlated_concepts(rho=-0.6)


def test_concept_correlation_rises_with_rho_in_every_seed():
    for seed in range(3):
        weak, strong = (torch.corrcoef(correlated_concepts(size=3000, rho=rho, seed=seed).train.c.T)[0, 1]
                        for rho in (0.0, 0.8))
        assert abs(float(weak)) < 0.1 < 0.5 < float(strong)


@pytest.mark.parametrize("name, kind", [("shapes", "shapes"), ("correlated", "correlated"), ("fashion-mnist", "fashion-mnist")])
def test_the_other_offline_configs_read(name, kind):
    spec = load_spec(name, quick=True)
    assert spec.dataset.name == kind and spec.seeds == 2 and "cem" in spec.models and "blackbox" in spec.models


def test_the_bundled_digits_config_reads_and_its_quick_block_is_small():
    spec = load_spec("digits-add", quick=True)
    assert spec.dataset.name == "digits" and spec.seeds == 2 and spec.train.max_epochs == 100
    assert {"blackbox", "cem", "intcem"} <= set(spec.models)
    assert load_dataset(spec.dataset, seed=0).info.n_concepts == 20


def test_rendered_shapes_show_their_concepts_and_correlate_them_by_rho():
    from conceptlab.datasets import rendered_shapes

    splits = rendered_shapes(size=2000, seed=0)
    x, c = splits.train.x.view(-1, 3, 16, 16), splits.train.c
    assert x[c[:, 1] == 1][:, 0].mean() > 3 * x[c[:, 1] == 0][:, 0].mean()  # red shapes are red
    assert x[c[:, 2] == 1].sum((1, 2, 3)).mean() > 1.5 * x[c[:, 2] == 0].sum((1, 2, 3)).mean()  # large shapes are larger
    left = x[c[:, 3] == 1]
    assert left[..., :8].sum() > 3 * left[..., 8:].sum()  # left shapes sit on the left
    assert torch.equal(splits.train.y, torch.where(c[:, 0] == 1, c[:, 1], c[:, 2]).long())
    for seed in range(3):
        independent, correlated = (torch.corrcoef(rendered_shapes(size=2000, rho=rho, seed=seed).train.c.T)[0, 1]
                                   for rho in (0.0, 0.8))
        assert abs(float(independent)) < 0.1 < 0.4 < float(correlated)
    assert load_dataset({"name": "shapes", "size": 100, "rho": 0.5, "image_size": 8}, seed=0).train.x.shape == (70, 192)


def test_the_correlated_toy_takes_any_number_of_concepts_and_checks_its_rho():
    splits = correlated_concepts(size=600, rho=0.6, n_concepts=9)
    assert splits.train.x.shape == (420, 18) and splits.info.n_concepts == 9
    assert torch.equal(splits.train.y, (2 * splits.train.c.sum(1) > 9).long())  # the majority of the nine
    with pytest.raises(ValueError, match=r"rho must be in \(-0.125, 1\) for 9"):
        correlated_concepts(rho=-0.2, n_concepts=9)
    three = load_dataset({"name": "correlated", "size": 300}, seed=0)
    assert torch.equal(three.train.c, correlated_concepts(size=300, seed=0).train.c)  # the default: three, as before
