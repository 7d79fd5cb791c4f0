import pickle

import numpy as np
import pytest
import torch

from conceptlab import cli
from conceptlab.datasets import load_dataset
from conceptlab.datasets.cub import (
    KOH_ATTRIBUTES,
    concept_groups,
    load_cub,
    load_koh_pickles,
    majority_class_concepts,
    read_archive,
)
from conceptlab.datasets.features import extract_features
from conceptlab.metrics import evaluate
from conceptlab.models import cbm
from conceptlab.training import TrainConfig, fit, seeded

from .cub_fixture import CLASSES, N_ATTRIBUTES, attribute_name, build_cub


@pytest.fixture
def archive(tmp_path):
    return build_cub(tmp_path / "cub")


def test_majority_vote_ties_not_visible_and_min_classes():
    # rows: images; columns: attributes 0..3. certainty 1 = not visible
    present = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1],   # class 0
                        [1, 0, 0, 1], [1, 0, 0, 0], [0, 0, 0, 0]])  # class 1
    certainty = np.array([[3, 3, 3, 3], [3, 3, 1, 3], [3, 1, 1, 3],
                          [3, 3, 3, 3], [3, 3, 3, 3], [3, 3, 3, 1]])
    classes = np.array([0, 0, 0, 1, 1, 1])
    matrix, kept = majority_class_concepts(present, certainty, classes, n_classes=2, min_classes=2)
    # attr 0: 2 vs 1 and 2 vs 1 -> present in both classes
    # attr 1: class 0 has 1 vote for, 1 against (the other negative is not visible): tie -> 1
    # attr 2: class 0 has 1 for and only not-visible negatives -> 1; class 1 has 0 for, 3 against -> 0
    # attr 3: class 0: 1 vs 2 -> 0; class 1: 1 vs 1 visible (one negative not visible): tie -> 1
    assert matrix.tolist() == [[1, 1, 1, 0], [1, 0, 0, 1]]
    assert kept.tolist() == [0]  # only attribute 0 is present in >= 2 classes
    _, kept_one = majority_class_concepts(present, certainty, classes, n_classes=2, min_classes=1)
    assert kept_one.tolist() == [0, 1, 2, 3]


def test_groups_follow_the_attribute_prefix():
    names = ["has_bill_shape::dagger", "has_wing_color::blue", "has_bill_shape::hooked"]
    assert concept_groups(names) == {"has_bill_shape": (0, 2), "has_wing_color": (1,)}


def test_reader_builds_koh_concepts_groups_and_remaps_classes(archive):
    splits = load_cub(archive, seed=0, min_classes=1)
    info = splits.info
    assert info.n_classes == 3 and info.task_names == tuple(CLASSES[:3])  # Delta has no images: dropped
    assert sorted(torch.cat([splits.train.y, splits.val.y, splits.test.y]).unique().tolist()) == [0, 1, 2]
    # class k (0-based) has attribute a when (a + k) % 3 == 0: every attribute is present in one class
    assert info.n_concepts == N_ATTRIBUTES
    for part in (splits.train, splits.val, splits.test):
        for c, y in zip(part.c, part.y):
            expected = [(a + int(y)) % 3 == 0 for a in range(N_ATTRIBUTES)]
            assert c.bool().tolist() == expected
    assert len(info.concept_groups) == 28
    assert "majority vote" in splits.concept_source


def test_min_classes_filters_attributes(archive):
    with pytest.raises(ValueError, match="no attribute is present in at least 2 classes"):
        load_cub(archive, seed=0, min_classes=2)  # each attribute is present in exactly one class


def test_validation_split_is_seeded_and_a_fifth_of_train(archive):
    a, b, c = load_cub(archive, seed=0, min_classes=1), load_cub(archive, seed=0, min_classes=1), load_cub(archive, seed=3, min_classes=1)
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths
    assert len(a.train) + len(a.val) == 12 and len(a.val) == round(0.2 * 12)
    assert len(a.test) == 6 and not set(a.val.paths) & set(a.train.paths)


def test_class_level_fallback_without_image_labels(tmp_path):
    root = build_cub(tmp_path / "cub", image_labels=False)
    splits = load_cub(root, seed=0)
    assert splits.info.concept_names == tuple(attribute_name(i) for i in KOH_ATTRIBUTES)
    assert "class-level fallback" in splits.concept_source
    for c, y in zip(splits.test.c, splits.test.y):
        assert c.bool().tolist() == [(a + int(y)) % 3 == 0 for a in KOH_ATTRIBUTES]
    strict = load_cub(root, seed=0, threshold=90.0)
    assert strict.test.c.sum() == 0


@pytest.mark.parametrize("damage, message", [
    (lambda rows: rows[:1], "a line per class id up to 3; got 1 line"),           # an IndexError before
    (lambda rows: [rows[0], rows[1].replace("10", "nan", 1), *rows[2:]], r"line 2: value \d+ is nan"),  # accepted before
    (lambda rows: [rows[0].replace("80", "150", 1), *rows[1:]], r"line 1: value \d+ is 150.0, not a percentage"),
])
def test_a_damaged_class_level_file_names_its_line(tmp_path, damage, message):
    root = build_cub(tmp_path / "cub", image_labels=False)
    path = root / "CUB_200_2011" / "attributes" / "class_attribute_labels_continuous.txt"
    path.write_text("\n".join(damage(path.read_text().splitlines())) + "\n")
    with pytest.raises(ValueError, match=message):
        load_cub(root, seed=0)


def test_koh_pickles_are_read_and_rerooted(archive, tmp_path):
    cub = read_archive(archive)
    rows = [
        {"id": i + 1, "img_path": f"/juice/scr/CUB_200_2011/images/{p}", "class_label": int(c) - 1,
         "attribute_label": [int(j % 2) for j in range(112)]}
        for i, (p, c) in enumerate(zip(cub.image_paths, cub.class_ids))
    ]
    folder = tmp_path / "class_attr_data_10"
    folder.mkdir()
    for part, chunk in (("train", rows[:10]), ("val", rows[10:12]), ("test", rows[12:])):
        with open(folder / f"{part}.pkl", "wb") as handle:
            pickle.dump(chunk, handle)
    splits = load_koh_pickles(folder, archive)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 2, 6)
    assert all(p.is_file() for p in splits.train.paths)
    assert splits.info.n_concepts == 112 and splits.train.c[0, :3].tolist() == [0.0, 1.0, 0.0]
    image, c, y = splits.test[0]
    assert image.size == (40, 40) and int(y) == int(cub.class_ids[12]) - 1


def test_feature_cache_hits_and_misses(archive, tmp_path, monkeypatch):
    data = load_cub(archive, seed=0, min_classes=1).train
    cache = tmp_path / "cache"
    first = extract_features(data, "resnet18", weights=None, image_size=32, batch_size=4, cache_dir=cache, progress=False)
    assert first.shape == (len(data), 512) and len(list(cache.glob("*.pt"))) == 1

    import conceptlab.datasets.features as features

    monkeypatch.setattr(features, "image_backbone", lambda *a: (_ for _ in ()).throw(AssertionError("recomputed")))
    again = extract_features(data, "resnet18", weights=None, image_size=32, batch_size=4, cache_dir=cache, progress=False)
    assert torch.equal(first, again)  # a hit never builds the backbone

    data.paths[0].write_bytes(data.paths[0].read_bytes() + b"\0")  # the file list changed
    with pytest.raises(AssertionError, match="recomputed"):
        extract_features(data, "resnet18", weights=None, image_size=32, batch_size=4, cache_dir=cache, progress=False)
    with pytest.raises(AssertionError, match="recomputed"):  # another transform is another cache entry
        extract_features(load_cub(archive, seed=0, min_classes=1).val, "resnet18", weights=None, image_size=48, cache_dir=cache)


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("images.txt", None, r"no CUB-200-2011 archive at .*CUB_200_2011/images.txt"),
        ("classes.txt", None, r"missing .*classes.txt: expected '<class id> <name>' per line"),
        ("image_class_labels.txt", "1\n", r"image_class_labels.txt, line 1: expected '<image id> <class id>'"),
        ("train_test_split.txt", "x 1\n", r"train_test_split.txt, line 1: the id must be a whole number; got 'x'"),
        ("images.txt", "1 a.jpg\n2 b.jpg\n1 c.jpg\n", r"images.txt, line 3: id 1 appears again \(first on line 1\)"),
        ("train_test_split.txt", "".join(f"{i} {2 if i == 5 else 1}\n" for i in range(1, 19)),
         r"train_test_split.txt: image 5: the split flag .* must be one of \[0, 1\]; got 2"),
        ("train_test_split.txt", "".join(f"{i} 1\n" for i in range(1, 19)), r"train_test_split.txt: no image is marked for test"),
        ("train_test_split.txt", "".join(f"{i} 0\n" for i in range(1, 19)), r"no image is marked for training"),
        ("../attributes.txt", "".join(f"{i} has_a::b{i}\n" for i in range(1, 301)),
         r"attributes.txt: expected the 312 attributes .* ids \[301, 302, 303, 304, 305\] are missing .*truncated"),
        ("image_class_labels.txt", "", r"image_class_labels.txt is empty"),
        ("attributes/image_attribute_labels.txt", "1 2 1\n", r"image_attribute_labels.txt, line 1: expected"),
        ("images.txt", "".join(f"{i} {'../../etc/passwd' if i == 4 else f'a/{i}.jpg'}\n" for i in range(1, 19)),
         r"image id 4 has path '../../etc/passwd'; paths must be relative"),  # accepted before (the explorer serves images)
        ("images.txt", "".join(f"{i} {'/etc/passwd' if i == 2 else f'a/{i}.jpg'}\n" for i in range(1, 19)),
         r"image id 2 has path '/etc/passwd'"),
    ],
)
def test_missing_and_malformed_files_name_the_file(archive, file, content, message):
    path = archive / "CUB_200_2011" / file
    if content is None:
        path.unlink()
        with pytest.raises(FileNotFoundError, match=message):
            load_cub(archive, min_classes=1)
    else:
        path.write_text(content)
        with pytest.raises(ValueError, match=message):
            load_cub(archive, min_classes=1)


def test_frozen_bench_on_the_fixture_records_group_curves(archive, tmp_path, capsys):
    config = tmp_path / "tinycub.yaml"
    config.write_text(
        "name: tinycub\n"
        f"dataset: {{name: cub, backbone: resnet18, weights: null, image_size: 32, min_classes: 1, cache_dir: {tmp_path / 'cache'}}}\n"
        "models: [cbm-ind, cem]\nseeds: 1\nmodel: {hidden: [16], embedding_size: 4, latent_dim: 16}\n"
        "train: {max_epochs: 2, batch_size: 8}\nevaluation: {intervention_repeats: 2, concept_alignment: false}\n"
    )
    out = tmp_path / "out"
    code = cli.main(["bench", str(config), "--root", str(archive), "--out", str(out), "--workers", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    import json

    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert {r["model"] for r in runs} == {"cbm-ind", "cem"}
    assert all(len(r["interventions"]["random"]) == 28 + 1 for r in runs)  # 28 concept groups
    assert cli.main(["bench", "cub100"]) == 2
    assert "needs the CUB archive: pass --root PATH" in capsys.readouterr().err


def test_finetune_mode_trains_a_backbone_end_to_end(archive):
    splits = load_dataset({"name": "cub", "root": str(archive), "mode": "finetune", "image_size": 32, "min_classes": 1}, seed=0)
    with seeded(0):
        model = cbm(in_features=0, n_concepts=splits.info.n_concepts, n_classes=splits.info.n_classes, hidden=[], backbone="resnet18")
    before = [p.detach().clone() for p in model.encoder[0].parameters()]
    fit(model, splits, "joint", config=TrainConfig(max_epochs=1, batch_size=4, num_workers=0, device="cpu"))
    assert any(not torch.equal(a, b) for a, b in zip(before, model.encoder[0].parameters()))
    metrics = evaluate(model, splits.test)
    assert 0 <= metrics["task_accuracy"] <= 1 and metrics["concept_accuracy"] is not None


@pytest.mark.parametrize("target", ["cub100", "cce"])
def test_a_cub_bench_without_the_cub_extra_says_what_to_install(archive, monkeypatch, capsys, target):
    """The ImportError came from inside the first run before; now the readiness check says it."""
    import importlib.util

    from conceptlab import cli

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "efficientnet_lite_pytorch" else real(name, *a))
    assert cli.main(["bench", target, "--root", str(archive), "--out", str(archive / "never")]) == 2
    assert "pip install 'conceptlab[cub]'" in capsys.readouterr().err and not (archive / "never").exists()


def test_a_corrupt_image_in_a_cub_bench_is_an_error_naming_the_file(archive, tmp_path, capsys):
    """A PIL.UnidentifiedImageError traceback before."""
    from conceptlab import cli

    splits = load_cub(archive, seed=0, min_classes=1)
    broken = splits.train.paths[1]
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    config = tmp_path / "tinycub.yaml"
    config.write_text(
        "name: tinycub\n"
        f"dataset: {{name: cub, backbone: resnet18, weights: null, image_size: 32, min_classes: 1, cache_dir: {tmp_path / 'c'}}}\n"
        "models: [cem]\nseeds: 1\nmodel: {hidden: [16], embedding_size: 4, latent_dim: 16}\ntrain: {max_epochs: 1}\n"
    )
    assert cli.main(["bench", str(config), "--root", str(archive), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{broken} is not a readable image" in err and "replace or remove it" in err
