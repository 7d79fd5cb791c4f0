"""Concept discovery on images with a planted red square that the model's class 1 reads: the parts,
CRAFT's factorisation, Sobol importance and maps, ACE's clusters and TCAV, ConceptSHAP's Shapley
split, and discovered concepts saved as a bank the rest of conceptlab reads."""

import pytest
import torch
from torch import nn

from conceptlab.concepts import CCE, CAVBank, tcav_from_bank
from conceptlab.concepts.discovery import ACE, CRAFT, ConceptSHAP, grid_patches, slic_segments
from conceptlab.models import pcbm

SIDE, SQUARE = 32, 10


def _images(n: int = 16, seed: int = 0):
    """Grey-blue noise; the first half carry a red square at a random place (its masks returned)."""
    g = torch.Generator().manual_seed(seed)
    images = 0.3 + 0.1 * torch.rand(n, 3, SIDE, SIDE, generator=g)
    images[:, 2] += 0.3
    masks = torch.zeros(n, SIDE, SIDE, dtype=torch.bool)
    for i in range(n // 2):
        top, left = torch.randint(0, SIDE - SQUARE + 1, (2,), generator=g).tolist()
        masks[i, top : top + SQUARE, left : left + SQUARE] = True
        images[i, :, masks[i]] = torch.tensor([0.95, 0.05, 0.05]).view(3, 1)
    return images, masks


class Redness(nn.Module):
    """Feature maps: unit 0 fires on red, units 1-3 on brightness; the head's class 1 reads unit 0."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
        with torch.no_grad():
            self.features[0].weight.copy_(torch.tensor([[2.0, -1, -1], [0.3, 0.3, 0.3], [0.5, 0, 0.2], [0, 0.4, 0.4]]).view(4, 3, 1, 1))
            self.features[0].bias.zero_()
            self.head[2].weight.copy_(torch.tensor([[-3.0, 0.5, 0.5, 0.5], [6.0, 0.0, 0.0, 0.0]]))
            self.head[2].bias.zero_()

    def forward(self, x):
        return self.head(self.features(x))


def test_grid_crops_are_the_image_regions_their_masks_name():
    images, _ = _images(2)
    parts = grid_patches(images, patch_size=8, stride=8, input_size=8)
    assert len(parts) == 2 * 16 and parts.masks[:16].sum(0).eq(1).all()  # the crops tile each image
    for row in (0, 5, 21):
        source, mask = parts.source[row], parts.masks[row]
        assert torch.equal(parts.images[row].flatten(1), images[source][:, mask])
    with pytest.raises(ValueError, match="patch_size must lie"):
        grid_patches(images, patch_size=40)


def test_slic_segments_tile_each_resolution_and_fill_outside_their_segment():
    images, _ = _images(2)
    parts = slic_segments(images[:1], resolutions=[4, 9], min_area=0.0, input_size=SIDE, fill=0.0)
    per_resolution = parts.masks.sum(0)
    assert per_resolution.eq(2).all()  # every pixel lies in one segment of each of the two segmentations
    assert (parts.images == 0).any()  # pixels of the bounding box outside the segment hold the fill
    with pytest.raises(ValueError, match="resolutions must be"):
        slic_segments(images, resolutions=[])


@pytest.fixture(scope="module")
def craft():
    images, masks = _images()
    model = Redness().eval()
    fitted = CRAFT(n_concepts=3, patch_size=12, stride=6, n_designs=64, seed=0).fit(model, "features", images,
                                                                                    head=model.head)
    return model, images, masks, fitted


def test_craft_factorises_the_crop_activations(craft):
    _, _, _, fitted = craft
    rebuilt = fitted.coefficients_ @ fitted.basis_
    assert (fitted.basis_ >= 0).all() and (fitted.coefficients_ >= 0).all()
    assert fitted.reconstruction_error_ < 0.2
    assert torch.allclose(rebuilt, fitted.patch_activations_, atol=0.2 * float(fitted.patch_activations_.abs().max()))


def test_craft_ranks_the_red_concept_first_and_finds_it_where_the_square_is(craft):
    model, images, masks, fitted = craft
    importance = fitted.importance(model, images, target=1)
    red = int(importance.argmax())
    top = fitted.coefficients_[:, red].argsort(descending=True)[:20]
    assert fitted.patches_.source[top].lt(len(images) // 2).float().mean() >= 0.9  # its crops come from red images
    maps = fitted.attribution_maps(images[: len(images) // 2])[:, red]
    found = maps / maps.flatten(1).amax(1).view(-1, 1, 1) >= 0.5
    iou = (found & masks[: len(images) // 2]).flatten(1).sum(1) / (found | masks[: len(images) // 2]).flatten(1).sum(1)
    assert iou.mean() > 0.5


def test_craft_importance_is_the_same_through_the_head_and_through_the_whole_model(craft):
    model, images, _, fitted = craft
    general = CRAFT(n_concepts=3, patch_size=12, stride=6, n_designs=64, seed=0).fit(model, "features", images)
    assert torch.allclose(general.basis_, fitted.basis_)
    assert torch.allclose(general.importance(model, images[:4], target=1), fitted.importance(model, images[:4], target=1),
                          atol=1e-4)


def test_craft_refuses_negative_activations_and_bad_settings():
    images, _ = _images(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[0].bias.fill_(-5.0)
    with pytest.raises(ValueError, match="negative activations"):
        CRAFT(n_concepts=2, patch_size=8).fit(model, "0", images)
    with pytest.raises(ValueError, match="power of 2"):
        CRAFT(n_concepts=2, patch_size=8, n_designs=30).fit(model, "0", images)
    with pytest.raises(ValueError, match="not fitted"):
        CRAFT().importance(model, images, target=0)


def test_ace_clusters_the_red_segments_and_tcav_finds_them_significant():
    images, _ = _images(16)
    model = Redness().eval()
    ace = ACE(n_clusters=4, resolutions=[6, 12], compactness=10, examples=8, min_image_share=0.3, seed=0)
    ace.fit(model, "features", images)
    found = ace.concepts()
    redness = [float(p.images[:, 0].mean() - p.images[:, 1].mean()) for p in found.examples]
    red = max(range(len(redness)), key=redness.__getitem__)
    assert found.examples[red].source.lt(8).all()  # the red concept's segments all come from images with the square
    g = torch.Generator().manual_seed(5)
    pool = slic_segments(0.3 + 0.1 * torch.rand(8, 3, SIDE, SIDE, generator=g), resolutions=[6, 12], compactness=10).images
    randoms = {f"random{r}": pool[r::3] for r in range(3)}
    scores, records = ace.importance(model, images[:8], target=1, randoms=randoms)
    assert records[red]["significant"] and scores[red] == 1.0


def test_conceptshap_values_add_up_to_the_completeness_and_rank_the_read_coordinate_first():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(900, 4, generator=g)
    head = nn.Linear(4, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.5, 0, 0], [-1.0, -0.5, 0, 0]]))
        head.bias.zero_()
    y = (a[:, 0] + 0.5 * a[:, 1] < 0).long()
    shap = ConceptSHAP(steps=300).fit(a[:, :3], a, y, head=head)
    assert len(shap.values_) == 8  # every subset of 3 concepts
    assert float(shap.shapley_.sum()) == pytest.approx(shap.completeness_ - shap.empty_, abs=1e-6)  # efficiency
    assert shap.shapley_.argsort(descending=True).tolist()[:2] == [0, 1] and shap.shapley_[2] < 0.05
    assert shap.completeness_ > 0.9
    sampled = ConceptSHAP(steps=300, exact_limit=4, permutations=10).fit(a[:, :3], a, y, head=head)
    assert sampled.shapley_.argmax() == 0
    assert float(sampled.shapley_.sum()) == pytest.approx(sampled.completeness_ - sampled.empty_, abs=1e-6)
    assert not any(p.grad is not None for p in head.parameters())  # the head was read, never trained


def test_discovered_concepts_save_as_a_bank_that_tcav_and_pcbm_read(craft, tmp_path):
    model, images, _, fitted = craft
    found = fitted.concepts(importance=fitted.importance(model, images, target=1), examples=12)
    path = found.save(tmp_path / "discovered.bank.pt", model)
    bank = CAVBank.load(path)
    meta = bank.saved_metadata
    assert meta["layer"] == "features" and meta["method"] == "craft" and meta["concepts"] == found.names
    assert meta["examples"][found.names[0]].shape == (12, 3, 64, 64) and len(meta["importance"]) == 3
    assert found.ranked()[0] == int(torch.tensor(meta["importance"]).argmax())
    scores = tcav_from_bank(model, path, images[:4], target=1)  # the layer and the pooling come from the bank
    assert scores.sensitivity.shape == (4, 3)
    pooled = pcbm(in_features=4, n_concepts=3, n_classes=2, bank=bank)
    assert pooled.bank_fitted
    embeddings = model.features(images[8:12]).mean((2, 3)).detach()  # images without the square, explained towards class 1
    result = CCE(bank, model.head[2]).explain(embeddings, 1)
    assert result.weights.shape == (4, 3) and result.success.all()


def test_ice_factorises_positions_and_its_parts_are_the_cells_they_cover():
    images, masks = _images()
    model = Redness().eval()
    ice = CRAFT(n_concepts=3, patch_size=None, n_designs=64, seed=0).fit(model, "features", images, head=model.head)
    assert len(ice.patches_) == len(images) * SIDE * SIDE  # one part per position of the (1x1 conv) maps
    assert ice.patches_.masks[:SIDE * SIDE].sum(0).eq(1).all()  # the cells tile the image
    red = int(ice.importance(model, images, target=1).argmax())
    top = ice.coefficients_[:, red].argsort(descending=True)[:20]
    assert ice.patches_.source[top].lt(len(images) // 2).all()
    inside = ice.patches_.masks[top] & masks[ice.patches_.source[top]]
    assert inside.flatten(1).any(1).all()  # every top cell lies on a red square
    flat = CRAFT(n_concepts=2, patch_size=None)
    with pytest.raises(ValueError, match="gives vectors, not maps"):
        flat.fit(nn.Sequential(nn.Flatten(), nn.Linear(3 * SIDE * SIDE, 4), nn.ReLU(), nn.Linear(4, 2)), "2", images)


def test_cli_discover_writes_a_bank_a_picture_and_a_ranking(tmp_path, capsys):
    from PIL import Image

    from conceptlab import cli

    images, _ = _images(8)
    (tmp_path / "images").mkdir()
    for i, image in enumerate(images):
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(tmp_path / "images" / f"{i}.png")
    torch.save(Redness().eval(), tmp_path / "redness.pt")
    args = ["discover", "--model", str(tmp_path / "redness.pt"), "--trust-model-file", "--layer", "features",
            "--images", str(tmp_path / "images"), "--target", "1", "--concepts", "3", "--patch-size", "12",
            "--image-size", str(SIDE), "--out", str(tmp_path / "out")]
    assert cli.main(args) == 0
    assert "concept" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"concepts.bank.pt", "concepts.json", "concepts.png"}
    assert CAVBank.load(tmp_path / "out" / "concepts.bank.pt").saved_metadata["method"] == "craft"
    assert cli.main([*args[:-2], "--method", "ace", "--out", str(tmp_path / "ace")]) == 2
    assert "give --random" in capsys.readouterr().err


def test_craft_concepts_do_not_depend_on_the_order_of_the_images(craft):
    model, images, _, fitted = craft
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(3))
    shuffled = CRAFT(n_concepts=3, patch_size=12, stride=6, n_designs=64, seed=0).fit(model, "features", images[order],
                                                                                      head=model.head)
    match = torch.nn.functional.normalize(fitted.basis_, dim=1) @ torch.nn.functional.normalize(shuffled.basis_, dim=1).T
    assert match.amax(1).min() > 0.999  # the same concepts, whichever image came first
