"""Image transforms for concept datasets (torchvision)."""

from __future__ import annotations

from torchvision import transforms as T

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(size: int = 224, train: bool = False) -> T.Compose:
    """Training: random resized crop, horizontal flip, colour jitter. Test: resize + centre crop.

    Both end with ImageNet normalisation, which the supported backbones expect.
    """
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels; got {size}")
    normalise = [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train:
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.5, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25),
            *normalise,
        ])
    return T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), *normalise])
