"""Image parts that discovered concepts are made of: square crops on a grid (CRAFT) and superpixel
segments at several resolutions (ACE, SLIC from scikit-image).

Every part is resized to the size the model reads and keeps where it came from (its image and its
pixel mask there), so a concept's examples can be shown and its location checked against a mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class Patches:
    """Parts of a batch of images.

    Attributes:
        images: (M, C, s, s) each part resized to the model's input size.
        source: (M,) the index of the image each part came from.
        boxes: (M, 4) each part's bounding box in its image: top, left, bottom, right (exclusive).
        image_size: (H, W) of the images the parts came from.
        segments: (M, H, W) the pixels of each part when it is not its whole box (superpixels); None for boxes.
    """

    images: Tensor
    source: Tensor
    boxes: Tensor
    image_size: tuple[int, int]
    segments: Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def masks(self) -> Tensor:
        """(M, H, W) where in its image each part lies."""
        if self.segments is not None:
            return self.segments
        rows, cols = torch.arange(self.image_size[0]), torch.arange(self.image_size[1])
        top, left, bottom, right = (self.boxes[:, i].view(-1, 1) for i in range(4))
        return (((rows >= top) & (rows < bottom))[:, :, None] & ((cols >= left) & (cols < right))[:, None, :])

    def subset(self, rows: Tensor) -> Patches:
        """The parts at ``rows``."""
        return Patches(self.images[rows], self.source[rows], self.boxes[rows], self.image_size,
                       None if self.segments is None else self.segments[rows])


def _check_images(images: Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be a (N, C, H, W) batch; got shape {tuple(images.shape)}")
    if images.shape[0] == 0:
        raise ValueError("no images given: pass the images of the class to explain")


def grid_patches(images: Tensor, *, patch_size: int = 64, stride: int | None = None, input_size: int | None = None) -> Patches:
    """Square crops of every image on a regular grid (CRAFT's parts), resized to ``input_size``.

    Args:
        images: (N, C, H, W) images, as the model takes them.
        patch_size: Side of each crop in pixels.
        stride: Step between crops (default 80 % of ``patch_size``, so neighbours overlap).
        input_size: Side the crops are resized to (default: the images' height).

    Returns:
        The crops, the images they came from and their boxes.

    Raises:
        ValueError: Not a batch of images, or crops larger than the images.

    Examples:
        >>> from conceptlab.concepts.discovery import grid_patches
        >>> parts = grid_patches(torch.rand(2, 3, 32, 32), patch_size=16, stride=16)
        >>> parts.images.shape, parts.source.tolist()
        (torch.Size([8, 3, 32, 32]), [0, 0, 0, 0, 1, 1, 1, 1])
    """
    _check_images(images)
    n, channels, height, width = images.shape
    if not 0 < patch_size <= min(height, width):
        raise ValueError(f"patch_size must lie in 1..{min(height, width)} (the images' side); got {patch_size}")
    step = stride or max(1, int(0.8 * patch_size))
    size = input_size or height
    tops = list(range(0, height - patch_size + 1, step))
    lefts = list(range(0, width - patch_size + 1, step))
    crops = images.unfold(2, patch_size, step).unfold(3, patch_size, step)  # (N, C, rows, cols, p, p)
    crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(-1, channels, patch_size, patch_size)
    if size != patch_size:
        crops = F.interpolate(crops, size=(size, size), mode="bilinear", align_corners=False)
    boxes = torch.tensor([[top, left, top + patch_size, left + patch_size] for top in tops for left in lefts])
    return Patches(crops.contiguous(), torch.arange(n).repeat_interleave(len(boxes)), boxes.repeat(n, 1), (height, width))


def cell_patches(images: Tensor, grid: tuple[int, int], *, input_size: int | None = None) -> Patches:
    """The region of every image that each position of a (h, w) feature map covers (ICE's parts).

    Args:
        images: (N, C, H, W) images.
        grid: (h, w) the feature map's size.
        input_size: Side each region is resized to (default: the region's own height).

    Returns:
        One part per image and position, in the order (image, row, column).

    Examples:
        >>> from conceptlab.concepts.discovery.patches import cell_patches
        >>> cell_patches(torch.rand(2, 3, 32, 32), (4, 4)).images.shape
        torch.Size([32, 3, 8, 8])
    """
    _check_images(images)
    n, channels, height, width = images.shape
    h, w = grid
    edges_r = [round(i * height / h) for i in range(h + 1)]
    edges_c = [round(j * width / w) for j in range(w + 1)]
    boxes = torch.tensor([[edges_r[i], edges_c[j], edges_r[i + 1], edges_c[j + 1]] for i in range(h) for j in range(w)])
    size = input_size or (edges_r[1] - edges_r[0])
    crops = [F.interpolate(images[:, :, t:b, left:r], size=(size, size), mode="bilinear", align_corners=False)
             for t, left, b, r in boxes.tolist()]
    crops = torch.stack(crops, 1).reshape(-1, channels, size, size)
    return Patches(crops, torch.arange(n).repeat_interleave(len(boxes)), boxes.repeat(n, 1), (height, width))


def slic_segments(
    images: Tensor,
    *,
    resolutions: Sequence[int] = (15, 50, 80),
    compactness: float = 20.0,
    input_size: int | None = None,
    min_area: float = 0.01,
    fill: Tensor | float | None = None,
) -> Patches:
    """Superpixels of every image at several resolutions (ACE's parts): each segment's bounding box,
    with the pixels outside the segment set to ``fill``, resized to ``input_size``.

    Segmentation runs on each image's values rescaled to [0, 1] per image (SLIC's colour distance
    needs a fixed range; the crops keep the model's own values).

    Args:
        images: (N, C, H, W) images, as the model takes them.
        resolutions: Approximate segments per image, one segmentation per entry.
        compactness: SLIC's balance of colour and space (higher: squarer segments).
        input_size: Side the crops are resized to (default: the images' height).
        min_area: Smallest segment kept, as a share of the image's area.
        fill: The value outside a segment: per channel (C,) or one number; default: the images' mean per channel.

    Returns:
        The segments, the images they came from, their boxes and their pixels.

    Raises:
        ValueError: Not a batch of images, or an empty list of resolutions.

    Examples:
        >>> from conceptlab.concepts.discovery import slic_segments
        >>> parts = slic_segments(torch.rand(1, 3, 32, 32), resolutions=[4])
        >>> parts.images.shape[1:], bool(parts.masks.sum(0).eq(1).all())  # the segments tile the image
        (torch.Size([3, 32, 32]), True)
    """
    from skimage.segmentation import slic

    _check_images(images)
    if not resolutions or min(resolutions) < 1:
        raise ValueError(f"resolutions must be positive segment counts, e.g. (15, 50, 80); got {list(resolutions)}")
    n, channels, height, width = images.shape
    size = input_size or height
    background = images.mean((0, 2, 3)) if fill is None else torch.as_tensor(fill, dtype=images.dtype).expand(channels)
    crops, sources, masks, boxes = [], [], [], []
    for index in range(n):
        image = images[index]
        low, high = image.amin(), image.amax()
        scaled = ((image - low) / (high - low).clamp_min(1e-12)).permute(1, 2, 0).double().numpy()
        for count in resolutions:
            labels = slic(scaled, n_segments=count, compactness=compactness, start_label=0,
                          channel_axis=-1 if channels > 1 else None)
            for label in np.unique(labels):
                mask = torch.from_numpy(labels == label)
                if mask.sum() < min_area * height * width:
                    continue
                rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
                box = (slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1))
                part = torch.where(mask[box], image[:, box[0], box[1]], background.view(-1, 1, 1))
                crops.append(F.interpolate(part[None], size=(size, size), mode="bilinear", align_corners=False)[0])
                sources.append(index)
                masks.append(mask)
                boxes.append([box[0].start, box[1].start, box[0].stop, box[1].stop])
    return Patches(torch.stack(crops), torch.tensor(sources), torch.tensor(boxes), (height, width), torch.stack(masks))
