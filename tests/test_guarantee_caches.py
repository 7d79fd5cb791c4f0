"""Guarantee: a cache never serves damaged bytes, never runs code, and never fails a run."""

import os

import pytest
import torch

from conceptlab.cache import CacheWarning
from conceptlab.concepts import CAVBank
from conceptlab.datasets.cub import load_cub
from conceptlab.datasets.features import extract_features
from tests.cub_fixture import build_cub

DAMAGE = {
    "truncated": lambda blob: blob[: len(blob) // 2],
    "zeroed": lambda blob: blob[:100] + bytes(len(blob) // 3) + blob[100 + len(blob) // 3 :],
    "one flipped byte": lambda blob: blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:],
    "empty": lambda blob: b"",
}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return load_cub(build_cub(tmp_path_factory.mktemp("cub"), image_labels=False), seed=0, min_classes=1).train


def _features(images, cache):
    return extract_features(images, "resnet18", weights=None, image_size=32, batch_size=4, cache_dir=cache, progress=False)


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_feature_cache_is_reported_and_recomputed(images, tmp_path, damage):
    first = _features(images, tmp_path)
    (path,) = tmp_path.glob("features-*.pt")
    intact = path.read_bytes()
    path.write_bytes(DAMAGE[damage](intact))
    with pytest.warns(CacheWarning, match=f"{path}.*damaged"):
        again = _features(images, tmp_path)
    assert torch.equal(again, first)
    assert path.read_bytes() == intact  # recomputed and written whole again
    assert torch.equal(_features(images, tmp_path), first)  # and now a clean hit


@pytest.mark.parametrize("foreign", ["narrow", "short", "nan", "not a tensor"])
def test_a_feature_cache_with_intact_bytes_but_wrong_contents_is_recomputed(images, tmp_path, foreign):
    """A file under the right name with a valid checksum but the wrong contents (another backbone's
    width, other images, NaN) was served as a "cache hit" before."""
    from conceptlab.cache import store_cached

    first = _features(images, tmp_path)
    (path,) = tmp_path.glob("features-*.pt")
    wrong = {"narrow": first[:, :7], "short": first[:-1], "nan": first * float("nan"), "not a tensor": {"x": 1}}[foreign]
    store_cached(wrong, path)
    with pytest.warns(CacheWarning, match="not finite features of shape"):
        again = _features(images, tmp_path)
    assert torch.equal(again, first)
    assert torch.equal(_features(images, tmp_path), first)  # rewritten: a clean hit now


def test_without_a_writable_cache_the_features_are_computed_uncached(images, tmp_path):
    blocked = tmp_path / "not-a-directory"
    blocked.write_text("a file where the cache directory should be")
    with pytest.warns(CacheWarning, match="cannot write cache file"):
        features = _features(images, blocked / "cache")
    assert features.shape == (len(images), 512)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories anyway")
def test_a_read_only_cache_directory_warns_and_runs(images, tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.warns(CacheWarning, match="cannot write cache file"):
            assert _features(images, tmp_path).shape[0] == len(images)
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_a_damaged_cav_cache_is_recomputed(tmp_path, damage):
    g = torch.Generator().manual_seed(0)
    sets = {"c": torch.randn(20, 8, generator=g) + 2, "r": torch.randn(20, 8, generator=g)}
    first = CAVBank(cache_dir=tmp_path).fit(sets, [("c", "r")])
    (path,) = tmp_path.glob("cavs-*.pt")
    path.write_bytes(DAMAGE[damage](path.read_bytes()))
    with pytest.warns(CacheWarning, match=str(path)):
        again = CAVBank(cache_dir=tmp_path).fit(sets, [("c", "r")])
    assert torch.equal(again.directions_, first.directions_)
