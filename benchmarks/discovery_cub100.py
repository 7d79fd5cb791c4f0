"""Concept discovery on cub100 with a planted visual edit: does CRAFT (and ACE) find the edit, rank it
among the most important concepts, and locate it?

    python benchmarks/discovery_cub100.py --split held-out [--ace] [--cache /tmp/discovery] [--json out.json]

Data: the first 20 classes of ``../shared/data/cub100`` (official train/test split), images resized to
224. The edit: a 72-pixel checkerboard of magenta and yellow 9-pixel squares pasted at a random place
(seeded per image). Every *training* image of the edited class carries it, so the model learns it as
evidence for that class; half of the edited class's *test* images carry it (drawn by seed), and
discovery runs on all of that class's test images, so a concept made of the edit must draw its crops
from the edited half.

Model: EfficientNet-Lite0 with its bundled ImageNet weights (the ``[cub]`` extra), frozen; a linear
classifier over its pooled last feature maps, trained here (full-batch Adam, 300 steps). Discovery
reads the feature maps (after ReLU6) with the classifier as the head.

CRAFT settings (chosen on the dev split, see below): 20 concepts (craft-xai's default count), the
feature-map positions factorised rather than resized crops (``patch_size=None``, ICE's parts: resized
crops found the edit as a concept with 100 % edited crops, but the whole images, read at another scale,
never expressed it, so its importance was 0), and the discovery images read at 448 pixels (14 x 14
maps; at 224 the 7 x 7 maps located the edit with IoU 0.25).

Measured (the issue's acceptance, fixed before any run): among the 3 concepts ranked highest by
importance (CRAFT: total Sobol index of the class logit; ACE: TCAV score, 0 when not significant),
one whose 20 top crops come >= 80 % from edited images, and (CRAFT) whose attribution map, scaled to
its maximum on each edited image and cut at 0.5, overlaps the edit with a mean IoU >= 0.5.

Protocol: ``--split dev`` edits class 3 of the 20 (edit seed 0): settings (patch size, number of
concepts, threshold) were looked at there only. ``--split held-out`` edits class 12 (edit seed 1),
fixed before the first run; the numbers reported are held-out ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conceptlab.concepts.discovery import ACE, CRAFT, slic_segments
from conceptlab.models.encoders import image_backbone

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cub100" / "CUB_200_2011"
SPLITS = {"dev": (3, 0), "held-out": (12, 1)}  # (edited class among the 20, edit seed)
N_CLASSES, SIZE, SQUARE = 20, 224, 9
EDIT = 72  # side of the edit in pixels (--edit)


def load_cub(root: Path = ROOT) -> tuple[Tensor, Tensor, Tensor]:
    """Images (N, 3, 224, 224) in [0, 1], class (N,) and is-train (N,) of the first 20 classes."""
    from PIL import Image

    lines = lambda name: [line.split() for line in (root / name).read_text().splitlines() if line.strip()]  # noqa: E731
    paths = {int(i): p for i, p in lines("images.txt")}
    labels = {int(i): int(c) for i, c in lines("image_class_labels.txt")}
    train = {int(i): int(t) for i, t in lines("train_test_split.txt")}
    classes = sorted(set(labels.values()))[:N_CLASSES]
    ids = [i for i in sorted(paths) if labels[i] in classes]
    images = []
    for i in ids:
        with Image.open(root / "images" / paths[i]) as image:
            array = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.float32) / 255
        images.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(images), torch.tensor([classes.index(labels[i]) for i in ids]), torch.tensor([train[i] for i in ids]).bool()


def edit_mask(seed: int, index: int, edit: int = EDIT) -> Tensor:
    """(224, 224) where the edit of image ``index`` goes."""
    rng = np.random.default_rng([seed, index])
    top, left = rng.integers(0, SIZE - edit + 1, 2)
    mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    mask[top : top + edit, left : left + edit] = True
    return mask


def paste_edit(image: Tensor, mask: Tensor) -> Tensor:
    """``image`` with the checkerboard pasted where ``mask`` is set."""
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    checker = ((rows // SQUARE + cols // SQUARE) % 2).bool()
    pattern = torch.where(checker, torch.tensor([1.0, 0.0, 1.0]).view(3, 1, 1), torch.tensor([1.0, 1.0, 0.0]).view(3, 1, 1))
    return torch.where(mask, pattern, image)


class FeatureMaps(nn.Module):
    """[0, 1] images -> EfficientNet-Lite0's last feature maps (1280 x 7 x 7)."""

    def __init__(self):
        super().__init__()
        self.backbone = image_backbone("efficientnet_lite0", "bundled")

    def forward(self, x: Tensor) -> Tensor:
        b = self.backbone
        return b.net.net.extract_features((x - b.mean) / b.std)


class Pooled(nn.Module):
    """The head: global average pooling, then a linear classifier."""

    def __init__(self, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(1280, n_classes)

    def forward(self, maps: Tensor) -> Tensor:
        return self.linear(maps.mean((2, 3)))


class PlantedModel(nn.Module):
    def __init__(self, n_classes: int):
        super().__init__()
        self.features = FeatureMaps()
        self.head = Pooled(n_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def build(split: str, cache: Path | None, edit: int = EDIT) -> dict:
    """The edited data, the trained model and its accuracies."""
    edited_class, seed = SPLITS[split]
    images, y, is_train = load_cub()
    clean_images = images.clone()
    edited = torch.zeros(len(y), dtype=torch.bool)
    masks = torch.zeros(len(y), SIZE, SIZE, dtype=torch.bool)
    rng = np.random.default_rng([seed, 99])
    for i in (y == edited_class).nonzero().flatten().tolist():
        if is_train[i] or rng.random() < 0.5:
            masks[i] = edit_mask(seed, i, edit)
            images[i] = paste_edit(images[i], masks[i])
            edited[i] = True
    torch.manual_seed(seed)
    model = PlantedModel(N_CLASSES).eval()
    key = cache / f"maps-{split}-{edit}.pt" if cache else None
    if key is not None and key.is_file():
        pooled = torch.load(key)
    else:
        with torch.no_grad():
            pooled = torch.cat([model.features(images[i : i + 64]).mean((2, 3)) for i in range(0, len(images), 64)])
        if key is not None:
            key.parent.mkdir(parents=True, exist_ok=True)
            torch.save(pooled, key)
    optimiser = torch.optim.Adam(model.head.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(300):
        optimiser.zero_grad()
        F.cross_entropy(model.head.linear(pooled[is_train]), y[is_train]).backward()
        optimiser.step()
    with torch.no_grad():
        predicted = model.head.linear(pooled).argmax(1)
    test_class = (~is_train) & (y == edited_class)
    with torch.no_grad():  # how much the model relies on the edit: the class logit with and without it
        rows = (test_class & edited).nonzero().flatten()
        gain = float((model(images[rows])[:, edited_class] - model(clean_images[rows])[:, edited_class]).mean())
    accuracy = {
        "class logit gained from the edit (edited test images)": gain,
        "test": float((predicted[~is_train] == y[~is_train]).float().mean()),
        "edited class, edited test images": float((predicted[test_class & edited] == edited_class).float().mean()),
        "edited class, clean test images": float((predicted[test_class & ~edited] == edited_class).float().mean()),
    }
    rows = test_class.nonzero().flatten()
    return {"model": model, "images": images[rows], "edited": edited[rows], "masks": masks[rows], "target": edited_class,
            "accuracy": accuracy, "randoms": images[(~is_train) & (y != edited_class)]}


def iou(maps: Tensor, masks: Tensor) -> Tensor:
    """(N,) IoU of each map, scaled to its maximum and cut at 0.5, with the mask."""
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    found = maps / peak >= 0.5
    return (found & masks).flatten(1).sum(1) / (found | masks).flatten(1).sum(1).clamp_min(1)


def craft_run(data: dict, n_concepts: int = 20, patch_size: int | None = None, scale: int = 448) -> dict:
    model, edited = data["model"], data["edited"]
    images = F.interpolate(data["images"], size=(scale, scale), mode="bilinear", align_corners=False)
    masks = F.interpolate(data["masks"][:, None].float(), size=(scale, scale), mode="nearest")[:, 0].bool()
    start = time.perf_counter()
    craft = CRAFT(n_concepts, patch_size=patch_size, seed=0).fit(model, "features", images, head=model.head)
    fitted = time.perf_counter()
    importance = craft.importance(model, images, target=data["target"])
    done = time.perf_counter()
    maps = craft.attribution_maps(images[edited])
    order = importance.argsort(descending=True).tolist()
    concepts = []
    for k in order:
        top = craft.coefficients_[:, k].argsort(descending=True)[:20]
        purity = float(edited[craft.patches_.source[top]].float().mean())
        concepts.append({"concept": k, "importance": float(importance[k]), "edited_share_top20": purity,
                         "iou": float(iou(maps[:, k], masks[edited]).mean())})
    passed = any(c["edited_share_top20"] >= 0.8 and c["iou"] >= 0.5 for c in concepts[:3])
    return {"concepts": concepts, "passed": passed, "fit_s": fitted - start, "importance_s": done - fitted,
            "reconstruction_error": craft.reconstruction_error_, "craft": craft}


def ace_run(data: dict) -> dict:
    model, images, edited = data["model"], data["images"], data["edited"]
    start = time.perf_counter()
    ace = ACE(n_clusters=25, resolutions=(15, 50, 80), examples=20, seed=0).fit(model, "features", images)
    pool = slic_segments(data["randoms"][:20], resolutions=(15, 50, 80)).images
    generator = torch.Generator().manual_seed(0)
    randoms = {f"random{r}": pool[torch.randperm(len(pool), generator=generator)[:40]] for r in range(4)}
    scores, records = ace.importance(model, images, target=data["target"], randoms=randoms)
    found = ace.concepts(importance=scores)
    concepts = [{"cluster": ace.kept_[k], "tcav": float(scores[k]), "p": records[k]["p_paper"],
                 "edited_share_top20": float(edited[found.examples[k].source].float().mean())} for k in found.ranked()]
    fourth = concepts[3]["tcav"] if len(concepts) > 3 else -1.0  # a top-3 place shared with the 4th is a tie, not a rank
    passed = any(c["edited_share_top20"] >= 0.8 and c["tcav"] > max(fourth, 0.0) for c in concepts[:3])
    ties = sum(c["tcav"] == concepts[0]["tcav"] for c in concepts)
    return {"concepts": concepts, "kept": len(ace.kept_), "segments": len(ace.segments_), "passed": passed, "tied_first": ties,
            "seconds": time.perf_counter() - start}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=list(SPLITS), default="held-out")
    parser.add_argument("--ace", action="store_true", help="run ACE as well (slower: ~4,000 segments)")
    parser.add_argument("--cache", type=Path, default=None, help="keep the pooled features here between runs")
    parser.add_argument("--edit", type=int, default=EDIT, help="side of the edit in pixels")
    parser.add_argument("--concepts", type=int, default=20, help="CRAFT's number of concepts")
    parser.add_argument("--patch", type=int, default=0, help="CRAFT's crop size; 0: factorise feature-map positions (ICE)")
    parser.add_argument("--scale", type=int, default=448, help="side the discovery images are resized to")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    data = build(args.split, args.cache, args.edit)
    print(f"{args.split}: class {data['target']} edited; accuracy {data['accuracy']}", flush=True)
    result = {"split": args.split, "accuracy": data["accuracy"]}
    craft = craft_run(data, args.concepts, args.patch or None, args.scale)
    craft.pop("craft")
    result["craft"] = craft
    for c in craft["concepts"][:5]:
        print(f"CRAFT concept {c['concept']}: importance {c['importance']:.3f}, top-20 crops from edited images "
              f"{100 * c['edited_share_top20']:.0f} %, IoU with the edit {c['iou']:.2f}", flush=True)
    print(f"CRAFT passes: {craft['passed']} (fit {craft['fit_s']:.1f} s, importance {craft['importance_s']:.1f} s)", flush=True)
    if args.ace:
        result["ace"] = ace_run(data)
        for c in result["ace"]["concepts"][:5]:
            print(f"ACE cluster {c['cluster']}: TCAV {c['tcav']:.2f} (p {c['p']:.3g}), top-20 segments from edited images "
                  f"{100 * c['edited_share_top20']:.0f} %", flush=True)
        print(f"ACE passes: {result['ace']['passed']} ({result['ace']['tied_first']} clusters tie for first; "
              f"{result['ace']['kept']} of 25 clusters kept, "
              f"{result['ace']['segments']} segments, {result['ace']['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
