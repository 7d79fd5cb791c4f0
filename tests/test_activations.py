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
