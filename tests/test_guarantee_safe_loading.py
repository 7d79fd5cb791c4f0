"""Guarantee: no file runs code unless the user says so; every model file kind loads or says why not."""

import os
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from conceptlab.datasets import ConceptInfo
from conceptlab.models import cbm, load_model, save_model
from conceptlab.models.io import load_any_model


class Payload:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _malicious(path, marker):
    torch.save({"model": Payload(marker)}, path)
    return path


def _example_folders(root, d=4):
    for folder in ("concepts/a", "random/r0", "random/r1", "inputs"):
        (root / folder).mkdir(parents=True)
        torch.save(torch.randn(6, d), root / folder / "x.pt")


@pytest.mark.parametrize("command", ["tcav", "cce"])
def test_a_crafted_model_file_never_runs_through_the_cli(tmp_path, command):
    marker = tmp_path / "ran"
    evil = _malicious(tmp_path / "evil.pt", marker)
    _example_folders(tmp_path)
    args = {"tcav": ["--layers", "0", "--concepts", str(tmp_path / "concepts"), "--random", str(tmp_path / "random"),
                     "--inputs", str(tmp_path / "inputs"), "--target", "0"],
            "cce": ["--bank", str(tmp_path / "missing-bank.pt"), "--images", str(tmp_path / "none.jpg"), "--target", "0"]}
    result = subprocess.run([sys.executable, "-m", "conceptlab.cli", command, "--model", str(evil), *args[command]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--trust-model-file" in result.stderr and "runs code" in result.stderr
    assert not marker.exists(), "the payload ran"


def test_pickled_modules_load_only_when_trusted_and_with_a_warning(tmp_path):
    module = nn.Sequential(nn.Linear(3, 2))
    torch.save(module, tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="trust_code=True"):
        load_any_model(tmp_path / "whole.pt")
    with pytest.warns(UserWarning, match="runs any code the file carries"):
        loaded, classes = load_any_model(tmp_path / "whole.pt", trust_code=True)
    assert isinstance(loaded, nn.Sequential) and classes == []


def _exported(path):
    from conceptlab.models.io import save_exported

    return save_exported(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), torch.randn(1, 3), path)


def _rewritten(source, target, replace):
    """A copy of the zip ``source`` whose members pass through ``replace(name, data) -> data``."""
    import zipfile

    with zipfile.ZipFile(source) as original, zipfile.ZipFile(target, "w") as crafted:
        for info in original.infolist():
            crafted.writestr(info, replace(info.filename, original.read(info.filename)))
    return target


def _payload_bytes(marker) -> bytes:
    import io

    buffer = io.BytesIO()
    torch.save({"model": Payload(marker)}, buffer)
    return buffer.getvalue()


def test_torch_export_load_itself_runs_a_crafted_sample_input(tmp_path):
    """The fault is real: torch.export.load unpickles sample inputs without weights_only."""
    marker = tmp_path / "ran"
    evil = _rewritten(_exported(tmp_path / "m.pt2"), tmp_path / "evil.pt2",
                      lambda name, data: _payload_bytes(marker) if name.endswith("sample_inputs/model.pt") else data)
    try:
        torch.export.load(str(evil))
    except Exception:  # whether it then fails does not matter: the payload has run by then
        pass
    assert marker.exists(), "torch no longer runs it: this guard may be unnecessary, check"


def test_a_crafted_export_archive_never_runs_whatever_member_carries_the_payload(tmp_path):
    import zipfile

    real = _exported(tmp_path / "m.pt2")
    names = [n for n in zipfile.ZipFile(real).namelist() if not n.endswith("/")]
    assert len(names) >= 8
    for i, target in enumerate(names):
        marker = tmp_path / f"ran{i}"
        payload = _payload_bytes(marker)
        evil = _rewritten(real, tmp_path / f"evil{i}.pt2",
                          lambda name, data, target=target, payload=payload: payload if name == target else data)
        try:
            load_any_model(evil)
        except ValueError as err:
            assert "evil" in str(err)
        assert not marker.exists(), f"the payload in {target} ran"
    model, _ = load_any_model(real)  # the genuine archive still loads
    assert model(torch.randn(2, 3)).shape == (2, 2)


def test_an_export_archive_that_marks_a_weight_as_pickled_is_refused(tmp_path):
    import json

    marker = tmp_path / "ran"

    def replace(name, data):
        if name.endswith("weights/model_weights_config.json"):
            config = json.loads(data)
            for entry in config["config"].values():
                entry["use_pickle"] = True
            return json.dumps(config).encode()
        return _payload_bytes(marker) if name.endswith("weights/weight_0") else data

    evil = _rewritten(_exported(tmp_path / "m.pt2"), tmp_path / "evil.pt2", replace)
    with pytest.raises(ValueError, match="weight_0 holds pickled objects"):
        load_any_model(evil)
    assert not marker.exists()


def test_torchscript_loads_and_says_why_it_cannot_show_layers(tmp_path):
    from conceptlab.concepts import capture_activations

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))), tmp_path / "m.ts")
        model, _ = load_any_model(tmp_path / "m.ts")
    assert model(torch.randn(5, 3)).shape == (5, 2)
    with pytest.raises(ValueError, match="TorchScript module cannot show its hidden layers.*torch.export"):
        capture_activations(model, ["1"], torch.randn(5, 3))


def test_an_exported_program_loads_with_its_layers(tmp_path):
    from conceptlab.concepts import capture_activations
    from conceptlab.models.io import save_exported

    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)).eval()
    save_exported(module, torch.randn(1, 3), tmp_path / "m.pt2")
    model, _ = load_any_model(tmp_path / "m.pt2")
    x = torch.randn(7, 3)
    assert torch.allclose(capture_activations(model, ["1"], x)["1"], module[1](module[0](x)), atol=1e-6)


@pytest.mark.parametrize("content", [b"", b"hello, this is text\n", "truncate"])
def test_damaged_model_files_are_errors_that_name_the_file(tmp_path, content):
    path = tmp_path / "model.pt"
    if content == "truncate":
        save_model(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), path, ConceptInfo(("a", "b"), ("no", "yes")))
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=str(path)):
        load_model(path)
    with pytest.raises(ValueError, match=str(path)):
        load_any_model(path)


def _saved_files(tmp_path):
    """One file of each kind conceptlab saves and loads back: a model and a concept bank."""
    from conceptlab.concepts import CAVBank

    torch.manual_seed(0)
    model_path = save_model(cbm(in_features=3, n_concepts=2, n_classes=2, hidden=[8]), tmp_path / "model.pt", ConceptInfo(("a", "b"), ("no", "yes")))
    g = torch.Generator().manual_seed(0)
    sets = {name: torch.randn(20, 6, generator=g) + shift for name, shift in (("c", 1.0), ("r", 0.0))}
    bank_path = CAVBank().fit(sets, [("c", "r")]).save(tmp_path / "bank.pt", head="fc")
    return {"model": (model_path, load_model), "bank": (bank_path, CAVBank.load)}


@pytest.mark.parametrize("kind", ["model", "bank"])
def test_every_byte_flip_in_a_saved_file_is_caught_or_harmless(tmp_path, kind):
    """Flip each of 300 spread bytes in turn: the file loads to exactly the saved contents, or
    loading fails naming the file; never silently different weights (58 of 61 flips did before)."""
    path, load = _saved_files(tmp_path)[kind]
    original = path.read_bytes()
    reference = load(path)
    tensors = (lambda m: m[0].state_dict()) if kind == "model" else (lambda b: {"d": b.directions_, "i": b.intercepts_})
    expected = tensors(reference)
    caught = harmless = 0
    for position in torch.linspace(0, len(original) - 1, 300).long().unique().tolist():
        damaged = bytearray(original)
        damaged[position] ^= 0xFF
        path.write_bytes(bytes(damaged))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # a missing-checksum warning would mean the checksum was lost
                loaded = tensors(load(path))
        except (ValueError, UserWarning) as err:
            assert str(path) in str(err), f"byte {position}: {err}"
            caught += 1
            continue
        same = loaded.keys() == expected.keys() and all(
            torch.allclose(loaded[k], expected[k], rtol=0, atol=0, equal_nan=True) for k in expected)  # unset buffers are NaN
        assert same, f"byte {position} changed the {kind} silently"
        harmless += 1
    assert caught > 100, (caught, harmless)


def test_a_file_without_a_checksum_loads_with_a_warning(tmp_path):
    path, _ = _saved_files(tmp_path)["model"]
    payload = torch.load(path, weights_only=True)
    del payload["checksum"]
    torch.save(payload, path)
    with pytest.warns(UserWarning, match="no checksum.*save the conceptlab model file again"):
        load_model(path)


def test_loading_a_model_file_never_unpickles_code(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(ValueError, match="not a readable conceptlab model file"):
        load_model(_malicious(tmp_path / "evil.pt", marker))
    assert not marker.exists()


def test_the_explorer_never_runs_a_crafted_checkpoint_or_bank(tmp_path):
    """Neither a checkpoint nor a concept bank beside it runs code when the explorer opens them."""
    pytest.importorskip("fastapi")
    marker = tmp_path / "ran"
    evil = _malicious(tmp_path / "evil.pt", marker)
    result = subprocess.run([sys.executable, "-m", "conceptlab.cli", "explore", str(evil), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a readable conceptlab model file" in result.stderr
    info = ConceptInfo(("a", "b"), ("no", "yes"))
    good = save_model(cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[4]), tmp_path / "good.pt", info, dataset={"name": "xor", "size": 100}, seed=0)
    _malicious(tmp_path / "good.bank.pt", marker)
    result = subprocess.run([sys.executable, "-m", "conceptlab.cli", "explore", str(good), "--port", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "not a readable conceptlab concept bank" in result.stderr
    assert not marker.exists(), "the payload ran"
