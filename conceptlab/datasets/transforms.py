"""Image transforms for concept datasets (torchvision).

Transforms produce tensors in [0, 1]; each image backbone normalises its own input, so one
transform serves every backbone.
"""

from __future__ import annotations

from torchvision import transforms as T


def image_transform(size: int = 224, train: bool = False) -> T.Compose:
    """Training: random resized crop, horizontal flip, colour jitter. Test: resize + centre crop."""
    if size < 16:
        raise ValueError(f"image size must be at least 16 pixels; got {size}")
    if train:
        return T.Compose([
            T.RandomResizedCrop(size, scale=(0.5, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25),
            T.ToTensor(),
        ])
    return T.Compose([T.Resize(size), T.CenterCrop(size), T.ToTensor()])
