import pytest
import torch
from torch import nn

from conceptlab.concepts.activations import capture_activations, resolve_layer


def _net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 2, 3), nn.ReLU()), nn.Flatten(), nn.LazyLinear(3))


def test_capture_matches_a_manual_forward_in_batches():
    net = _net()
    x = torch.randn(10, 3, 8, 8)
    net(x)  # materialise the lazy layer
    acts = capture_activations(net, ["0", "2.0"], x, batch_size=3)
    assert torch.allclose(acts["0"], net[0](x).flatten(1), atol=1e-6)
    assert acts["2.0"].shape == (10, 2 * 4 * 4)
    pooled = capture_activations(net, ["2.0"], x, reduce="mean")["2.0"]
    assert torch.allclose(pooled, net[2][0](net[1](net[0](x))).mean(dim=(2, 3)), atol=1e-6)


def test_unknown_layer_names_suggest_close_ones():
    with pytest.raises(ValueError, match=r"no layer '2\.1x'.*did you mean .*2\.1"):
        resolve_layer(_net(), "2.1x")


def test_cache_hits_and_misses(tmp_path, monkeypatch):
    net = _net()
    x = torch.randn(6, 3, 8, 8)
    net(x)
    first = capture_activations(net, ["0"], x, cache_dir=tmp_path)["0"]
    assert len(list(tmp_path.glob("act-0-*.pt"))) == 1
    calls = []
    net[0].register_forward_hook(lambda *a: calls.append(1))
    assert torch.equal(capture_activations(net, ["0"], x, cache_dir=tmp_path)["0"], first)
    assert calls == []  # a hit runs no forward pass
    capture_activations(net, ["0"], x + 1, cache_dir=tmp_path)  # other inputs: a miss
    with torch.no_grad():
        net[0].weight.add_(1.0)
    capture_activations(net, ["0"], x, cache_dir=tmp_path)  # other weights: a miss
    assert len(calls) == 2 and len(list(tmp_path.glob("act-0-*.pt"))) == 3


def test_cache_keys_cover_parameter_free_modules_and_input_shapes(tmp_path):
    """Changes that keep every weight but change the activations must miss the cache."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.ReLU(), nn.Flatten())
    x = torch.randn(4, 3, 16, 64)
    relu = capture_activations(net, ["3"], x, cache_dir=tmp_path)["3"]
    net[1] = nn.LeakyReLU(0.5)  # no parameters, other activations
    leaky = capture_activations(net, ["3"], x, cache_dir=tmp_path)["3"]
    assert torch.allclose(leaky, net[3](net[2](net[1](net[0](x)))).flatten(1), atol=1e-6)
    assert not torch.allclose(leaky, relu)
    square = capture_activations(net, ["3"], x.reshape(4, 3, 32, 32), cache_dir=tmp_path)["3"]  # same values, other shape
    assert square.shape[1] != leaky.shape[1] or not torch.allclose(square, leaky)
    assert torch.allclose(square, net(x.reshape(4, 3, 32, 32)), atol=1e-6)
    net[1] = nn.LeakyReLU(0.1)  # same type, other setting
    assert not torch.allclose(capture_activations(net, ["3"], x, cache_dir=tmp_path)["3"], leaky)
    assert len(list(tmp_path.glob("act-3-*.pt"))) == 4


@pytest.mark.parametrize("damage", ["truncate", "zero", "garbage"])
def test_a_damaged_cache_file_is_reported_with_its_path_and_recomputed(tmp_path, damage):
    from conceptlab.cache import CacheWarning

    net = _net()
    x = torch.randn(6, 3, 8, 8)
    net(x)
    first = capture_activations(net, ["0"], x, cache_dir=tmp_path)["0"]
    (path,) = tmp_path.glob("act-0-*.pt")
    blob = path.read_bytes()
    path.write_bytes({"truncate": blob[: len(blob) // 2], "zero": blob[:200] + bytes(len(blob) - 200),
                      "garbage": b"not a cache"}[damage])
    with pytest.warns(CacheWarning, match=str(path)):
        again = capture_activations(net, ["0"], x, cache_dir=tmp_path)["0"]
    assert torch.equal(again, first)
    assert path.read_bytes() == blob  # rewritten whole


def test_a_pickle_in_the_cache_never_runs(tmp_path):
    """A cache file that carries code (even with a valid header and checksum) is refused, not executed."""
    import hashlib
    import io
    import os

    from conceptlab.cache import CacheWarning, load_cached

    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    buffer = io.BytesIO()
    torch.save({"x": Payload()}, buffer)
    payload = buffer.getvalue()
    path = tmp_path / "act-evil.pt"
    path.write_bytes(b"conceptlab-cache/1 sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.warns(CacheWarning, match="damaged"):
        assert load_cached(path) is None
    assert not marker.exists()


def test_an_unwritable_cache_warns_and_the_work_still_runs(tmp_path):
    from conceptlab.cache import CacheWarning

    net = _net()
    x = torch.randn(3, 3, 8, 8)
    net(x)
    blocked = tmp_path / "file"
    blocked.write_text("a file where the cache directory should be")
    with pytest.warns(CacheWarning, match="cannot write cache"):
        acts = capture_activations(net, ["0"], x, cache_dir=blocked / "cache")["0"]
    assert acts.shape == (3, 4 * 6 * 6)


def test_the_forward_pass_stops_after_the_last_requested_layer():
    net = _net()
    x = torch.randn(5, 3, 8, 8)
    net(x)
    later = []
    net[4].register_forward_hook(lambda *a: later.append(1))
    capture_activations(net, ["0", "2.0"], x, batch_size=2)
    assert later == []  # the head never ran

    class Skips(nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = nn.Linear(3, 3), nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"\['unused'\] did not run"):
        capture_activations(Skips(), ["unused"], torch.randn(2, 3))
