"""The concept explorer: its numbers are the library's, its filters and policy steps agree with
the library's curves, its server refuses bad input before starting and serves nothing else."""

from __future__ import annotations

import csv
import html
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import torch

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from conceptlab import cli  # noqa: E402
from conceptlab.concepts.bank import BANK_SUFFIX, bank_from_labels  # noqa: E402
from conceptlab.datasets import make_synthetic  # noqa: E402
from conceptlab.explorer import Corrections, Explorer, load_explorer_model  # noqa: E402
from conceptlab.explorer.app import create_app  # noqa: E402
from conceptlab.explorer.plane import plane_view  # noqa: E402
from conceptlab.explorer.serve import listen, open_explorer  # noqa: E402
from conceptlab.interventions import intervention_curve, next_units  # noqa: E402
from conceptlab.metrics import task_accuracy  # noqa: E402
from conceptlab.models import Intervention, black_box, cbm, cem, save_model  # noqa: E402
from conceptlab.models.base import predict  # noqa: E402
from conceptlab.models.heads import class_log_probs, predicted_class  # noqa: E402
from conceptlab.runtime import seeded  # noqa: E402
from conceptlab.training import TrainConfig, fit  # noqa: E402

from .processes import with_default_sigint  # noqa: E402

SIZE = 600


def _train_and_save(folder: Path, name: str, model, dataset: str, seed: int, epochs: int) -> Path:
    splits = make_synthetic(dataset, SIZE, seed)
    config = TrainConfig(max_epochs=epochs, batch_size=64, device="cpu", early_stopping_patience=0, intervention_prob=0.25)
    fit(model, splits, "joint", config=config)
    path = folder / "checkpoints" / f"{name}.pt"
    save_model(model, path, splits.info, dataset={"name": dataset, "size": SIZE}, seed=seed,
               evaluation={"binary_threshold": 0.0})
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A bench-like result folder on XOR seed 3: a briefly trained CEM (it errs, and correcting its
    concepts fixes that; a concept bank beside it) and a CBM (its linear head cannot express XOR);
    a CBM on seed 4 (other test samples) and a black box (no concepts)."""
    root = tmp_path_factory.mktemp("explorer")
    with seeded(0):
        weak = _train_and_save(root, "xor-cem-seed3", cem(in_features=2, n_concepts=2, n_classes=2, embedding_size=4, latent_dim=16, hidden=[16]), "xor", 3, 10)
        _train_and_save(root, "xor-cbm-seed3", cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[16]), "xor", 3, 40)
        _train_and_save(root, "xor-cbm-seed4", cbm(in_features=2, n_concepts=2, n_classes=2, hidden=[8]), "xor", 4, 3)
        _train_and_save(root, "xor-blackbox-seed3", black_box(in_features=2, n_classes=2, latent_dim=8, hidden=[8]), "xor", 3, 1)
    train = make_synthetic("xor", SIZE, 3).train
    bank_from_labels(train.x, train.c, train.info.concept_names, examples=100).save(weak.with_name(weak.stem + BANK_SUFFIX))
    return root


@pytest.fixture(scope="module")
def explorer(folder) -> Explorer:
    return open_explorer([folder])


@pytest.fixture(scope="module")
def client(explorer) -> TestClient:
    return TestClient(create_app(explorer), base_url="http://127.0.0.1:8765")


def _library_probs(explorer: Explorer, name: str, sample: int, fix: dict[int, float]) -> list[float]:
    """What the library itself says: the model's forward pass on the sample with an Intervention."""
    model, test = explorer.model(name).model, explorer.data(name).test
    mask, values = torch.zeros(1, 2, dtype=torch.bool), torch.zeros(1, 2)
    for i, v in fix.items():
        mask[0, i], values[0, i] = True, v
    with torch.no_grad():
        logits = model(test.x[sample : sample + 1], Intervention(mask, values) if fix else None).task_logits
    return class_log_probs(logits)[0].exp().tolist()


def test_folder_skips_models_without_concepts_and_pairs_models_by_data(explorer, folder):
    assert sorted(explorer.models) == ["xor-cbm-seed3", "xor-cbm-seed4", "xor-cem-seed3"]
    assert explorer.comparable("xor-cbm-seed3") == ["xor-cem-seed3"]  # seed 4 drew other test samples
    assert explorer.models["xor-cem-seed3"].bank is not None and explorer.models["xor-cbm-seed3"].bank is None
    two_files = open_explorer([folder / "checkpoints" / "xor-cbm-seed3.pt", folder / "checkpoints" / "xor-cem-seed3.pt"])
    assert two_files.comparable("xor-cbm-seed3") == ["xor-cem-seed3"]


@pytest.mark.parametrize("name", ["xor-cbm-seed3", "xor-cem-seed3"])
def test_an_intervention_through_the_api_gives_exactly_the_library_numbers(client, explorer, name):
    for sample, fix in [(0, {}), (5, {0: 1.0}), (7, {1: 0.0}), (11, {0: 0.0, 1: 1.0})]:
        text = ",".join(f"{i}:{v:g}" for i, v in fix.items())
        view = client.get("/api/view", params={"model": name, "sample": sample, "fix": text}).json()
        assert view["class_probs"] == _library_probs(explorer, name, sample, fix)  # bit for bit
        assert view["original_probs"] == _library_probs(explorer, name, sample, {})
        assert view["predicted"] == max(range(2), key=lambda k: view["class_probs"][k])


def test_a_correction_moves_the_prediction_and_nothing_else(explorer):
    name = "xor-cem-seed3"
    before = explorer.view(name, 3, Corrections({}))
    after = explorer.view(name, 3, Corrections({0: 1 - before.groups["x1 > 0.5"][0].true}))
    assert after.class_probs != before.class_probs
    # the model's own concept probabilities and the true labels do not change with a correction
    assert [r.probability for g in after.groups.values() for r in g] == [r.probability for g in before.groups.values() for r in g]
    assert after.true_class == before.true_class and after.original_probs == before.original_probs
    back = explorer.view(name, 3, Corrections({0: 1.0}).with_value(0, None))
    assert back.class_probs == before.class_probs  # "back to predicted" restores the prediction exactly


def test_setting_every_concept_true_fixes_the_cem(explorer):
    """The briefly trained CEM errs through its concepts; correcting them gives the true class."""
    name = "xor-cem-seed3"
    wrong = explorer.samples(name, "misclassified")
    assert wrong, "the briefly trained CEM should err on some samples"
    test = explorer.data(name).test
    fixed = [explorer.view(name, s, Corrections({0: float(test.c[s, 0]), 1: float(test.c[s, 1])})) for s in wrong]
    assert sum(v.predicted == v.true_class for v in fixed) >= 0.9 * len(wrong)


@pytest.mark.parametrize("name", ["xor-cbm-seed3", "xor-cem-seed3"])
def test_filters_agree_with_the_library(explorer, name):
    test = explorer.data(name).test
    out = predict(explorer.model(name).model, test.x)
    assert explorer.samples(name, "misclassified") == (predicted_class(out.task_logits) != test.y).nonzero().flatten().tolist()
    wrong_c = ((out.concept_probs > 0.5) != (test.c > 0.5)).any(1).nonzero().flatten().tolist()
    assert explorer.samples(name, "wrong-concepts") == wrong_c
    assert set(explorer.samples(name, "all", "xor")) == set((test.y == 1).nonzero().flatten().tolist())
    assert 1 - len(explorer.samples(name, "misclassified")) / len(test) == pytest.approx(task_accuracy(out.task_logits, test.y))
    with pytest.raises(ValueError, match="unknown filter"):
        explorer.samples(name, "wrongest")


@pytest.mark.parametrize("policy", ["uncertainty", "coop", "eudtp"])
@pytest.mark.parametrize("name", ["xor-cbm-seed3", "xor-cem-seed3"])
def test_next_units_replays_the_library_curve(explorer, policy, name):
    """Applying next_units n times over the test set gives intervention_curve's accuracy at every n."""
    model, test = explorer.model(name).model, explorer.data(name).test
    units = test.info.group_matrix()
    policy = explorer.policy(name, policy)  # coop: tuned on the model's validation split, once
    curve = intervention_curve(model, test, policy, groups=True, repeats=1)
    codes = model.encode(test.x).detach()
    done = torch.zeros(len(test), units.shape[0], dtype=torch.bool)
    for n in range(units.shape[0] + 1):
        mask = (done.float() @ units.float()) > 0
        with torch.no_grad():
            logits = model.decode(codes, Intervention(mask, test.c)).task_logits
        assert task_accuracy(logits, test.y) == pytest.approx(curve.accuracy_mean[n])
        if n < units.shape[0]:
            done[torch.arange(len(test)), next_units(model, codes, units, done=done, intervention=Intervention(mask, test.c), policy=policy)] = True


def test_policy_step_corrects_the_most_uncertain_group_to_its_true_value(client, explorer):
    name = "xor-cem-seed3"
    view = explorer.view(name, 8, Corrections({}))
    rows = [r for g in view.groups.values() for r in g]
    most_uncertain = min(rows, key=lambda r: abs(r.probability - 0.5))
    answer = client.get("/api/next", params={"model": name, "sample": 8, "policy": "uncertainty"}).json()
    assert answer["unit"] == most_uncertain.name
    assert answer["fix"] == f"{most_uncertain.index}:{most_uncertain.true:g}"
    second = client.get("/api/next", params={"model": name, "sample": 8, "policy": "uncertainty", "fix": answer["fix"]}).json()
    assert len(second["fix"].split(",")) == 2  # the other group next
    last = client.get("/api/next", params={"model": name, "sample": 8, "policy": "uncertainty", "fix": second["fix"]})
    assert last.status_code == 400 and "corrected already" in last.json()["error"]


def test_every_policy_steps_and_the_sample_curve_ends_at_full_correction(client, explorer):
    from conceptlab.interventions import POLICIES

    name = "xor-cem-seed3"
    for policy in POLICIES:
        response = client.get("/api/next", params={"model": name, "sample": 2, "policy": policy})
        if policy.startswith("learned"):  # only IntCEM learned a policy
            assert response.status_code == 400 and "intcem" in response.json()["error"]
            continue
        if policy not in explorer.policies(name):  # a CEM reports no concept uncertainty: refused, and not offered
            assert policy == "concept-uncertainty"
            assert response.status_code == 400 and "reports none" in response.json()["error"]
            assert f'data-policy="{policy}"' not in client.get("/explore", params={"model": name}).text
            continue
        assert response.status_code == 200, response.text
    points = client.get("/api/curve", params={"model": name, "sample": 2, "policy": "random"}).json()["points"]
    assert [p["n"] for p in points] == [0, 1, 2]
    test = explorer.data(name).test
    assert points[-1]["true_probability"] == _library_probs(explorer, name, 2, {0: float(test.c[2, 0]), 1: float(test.c[2, 1])})[int(test.y[2])]


def test_the_page_shows_both_models_with_the_same_corrections(client, explorer):
    page = client.get("/explore", params={"model": "xor-cbm-seed3", "sample": 4, "fix": "0:1", "compare": "xor-cem-seed3"})
    assert page.status_code == 200
    for col, name in enumerate(["xor-cbm-seed3", "xor-cem-seed3"]):
        shown = re.search(rf'id="prediction-{col}" data-predicted="(\d)"\s+data-probability="([0-9.]+)"', page.text)
        probs = _library_probs(explorer, name, 4, {0: 1.0})
        assert int(shown.group(1)) == max(range(2), key=lambda k: probs[k])
        assert float(shown.group(2)) == pytest.approx(max(probs), abs=1e-6)
    other_seed = client.get("/explore", params={"model": "xor-cbm-seed3", "compare": "xor-cbm-seed4"})
    assert other_seed.status_code == 400 and "same samples" in other_seed.text


def test_counterfactual_of_a_mistake_reaches_the_true_class(client, explorer):
    name = "xor-cem-seed3"
    wrong = explorer.samples(name, "misclassified")
    results = [client.get("/api/counterfactual", params={"model": name, "sample": s}).json() for s in wrong[:5]]
    assert any(r["success"] and (r["add"] or r["remove"]) for r in results)
    page = client.get("/explore", params={"model": name, "sample": wrong[0]})
    assert 'id="counterfactual"' in page.text
    shown = next(s for s, r in zip(wrong, results) if r["add"] or r["remove"])
    suggestion = results[wrong.index(shown)]
    applied = re.search(r'data-key="apply-cce" href="([^"]+)"', client.get("/explore", params={"model": name, "sample": shown}).text)
    fix = parse_qs(urlsplit(html.unescape(applied.group(1))).query)["fix"][0]  # one click applies the suggestion
    names = list(explorer.model(name).info.concept_names)
    expected = {names.index(c): 1.0 for c, _ in suggestion["add"]} | {names.index(c): 0.0 for c, _ in suggestion["remove"]}
    assert Corrections.parse(fix, len(names)).values == expected
    no_bank = client.get("/api/counterfactual", params={"model": "xor-cbm-seed3", "sample": 0})
    assert no_bank.status_code == 400 and "bank" in no_bank.json()["error"]


@pytest.mark.parametrize("dataset", ["xor", "dot", "trig"])
def test_the_plane_draws_each_concept_as_a_half_plane(dataset):
    test = make_synthetic(dataset, 400, 1).test
    view = plane_view(dataset, test.x, test.info.concept_names)
    for axis in (0, 1):
        assert torch.equal((view.points[:, axis] > view.boundaries[axis]).float(), test.c[:, axis])


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8765", "127.0.0.1.evil.example", "", "[::2]:80"])
def test_a_request_for_another_host_name_is_refused(explorer, host):
    """DNS rebinding: a page on evil.example whose name now points here must not read the explorer."""
    client = TestClient(create_app(explorer))
    for path in ("/", "/api/models", "/api/samples?model=x"):
        response = client.get(path, headers={"host": host})
        assert response.status_code == 421 and "answers only to" in response.text
    for local in ("127.0.0.1:8765", "localhost", "LOCALHOST:1", "[::1]:8765"):
        assert client.get("/api/models", headers={"host": local}).status_code == 200
    assert TestClient(create_app(explorer, hosts=None)).get("/api/models", headers={"host": "evil.example"}).status_code == 200


def test_plane_image_and_refusals(client):
    assert client.get("/plane/xor-cem-seed3/4.svg").text.startswith("<svg")
    assert client.get("/plane/xor-cem-seed3/100000.svg").status_code == 404
    assert client.get("/image/xor-cem-seed3/0").status_code == 404  # no image files behind synthetic data
    assert client.get("/static/../../../../etc/passwd").status_code == 404
    assert client.get("/static/%2e%2e/session.py").status_code == 404
    assert client.get("/api/view", params={"model": "nope", "sample": 0}).status_code == 404
    bad_fix = client.get("/api/view", params={"model": "xor-cem-seed3", "sample": 0, "fix": "7:1"})
    assert bad_fix.status_code == 400 and "index must lie in" in bad_fix.json()["error"]
    assert client.get("/api/view", params={"model": "xor-cem-seed3", "sample": -1}).status_code == 400
    page = client.get("/explore", params={"model": "xor-cem-seed3", "fix": "0:5"})
    assert page.status_code == 400 and "the value be 0 or 1" in page.text
    assert client.get("/explore", params={"model": "xor-cem-seed3", "fix": "<script>:1"}).text.count("<script>") == 0


def test_bad_input_fails_before_the_server_starts(folder, tmp_path, capsys):
    assert cli.main(["explore", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes((folder / "checkpoints" / "xor-cem-seed3.pt").read_bytes()[:500])
    assert cli.main(["explore", str(corrupt)]) == 2
    assert "not a readable conceptlab model file" in capsys.readouterr().err
    assert cli.main(["explore", str(folder / "checkpoints" / "xor-blackbox-seed3.pt")]) == 2
    assert "without concepts" in capsys.readouterr().err
    # a checkpoint whose recorded data are another dataset's: the concepts do not match
    model = load_explorer_model(folder / "checkpoints" / "xor-cem-seed3.pt").model
    splits = make_synthetic("xor", SIZE, 3)
    moved = save_model(model, tmp_path / "mismatch.pt", splits.info, dataset={"name": "dot", "size": SIZE}, seed=3)
    assert cli.main(["explore", str(moved)]) == 2
    assert "do not match the model" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["explore", str(folder), "--port", str(port)]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--port must lie in 0..65535"):
        listen("127.0.0.1", 70000)
    wide = bank_from_labels(torch.randn(40, 3), (torch.arange(40) % 2).float()[:, None], ["a"], examples=10)
    wide.save(tmp_path / "wide.bank.pt")
    assert cli.main(["explore", str(folder / "checkpoints" / "xor-cbm-seed3.pt"), "--bank", str(tmp_path / "wide.bank.pt")]) == 2
    assert "fitted on 3-dimensional embeddings" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["explore", str(empty)]) == 2
    assert "holds no model files" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_the_command_prints_its_url_and_serves(folder, host):
    """The printed address already answers; any host but this machine's own gets a warning."""
    process = subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "explore", str(folder / "checkpoints" / "xor-cem-seed3.pt"),
                                "--host", host, "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        found = re.search(rf"http://{re.escape(host)}:(\d+)/", line)
        assert found, process.stderr.read() if process.poll() is not None else line
        import httpx

        page = httpx.get(f"http://127.0.0.1:{found.group(1)}/", follow_redirects=True, timeout=30)
        assert page.status_code == 200 and "xor-cem-seed3" in page.text
    finally:
        process.terminate()
        process.wait(timeout=30)
    warned = "anyone who can reach this machine" in process.stderr.read()
    assert warned == (host != "127.0.0.1")


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@contextmanager
def _serving(explorer: Explorer) -> Iterator[str]:
    """The explorer's application on a real local port, in a thread; yields its address."""
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(explorer):
    """The application on a real local port, in a thread."""
    with _serving(explorer) as address:
        yield address


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _settled(driver, check) -> None:
    """Wait until ``check(driver)`` holds on the page shown (after a navigation, an element read
    from the page before may be gone: such a read is tried again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,)).until(check)


def _wait_for_swap(driver, before: str | None) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.getElementById('main').dataset.loaded") != before)


def test_in_a_real_browser_a_click_shows_the_library_prediction(browser, served, explorer):
    from selenium.webdriver.common.by import By

    name, sample = "xor-cem-seed3", 6
    browser.get(f"{served}/explore?model={name}&sample={sample}&compare=xor-cbm-seed3")
    true_value = float(explorer.data(name).test.c[sample, 0])
    flipped = 1.0 - true_value
    button = browser.find_element(By.CSS_SELECTOR, f'tr[data-concept="0"] button[data-value="{flipped:g}"]')
    button.click()
    _wait_for_swap(browser, None)
    for col, model in enumerate([name, "xor-cbm-seed3"]):
        shown = browser.find_element(By.ID, f"prediction-{col}")
        probs = _library_probs(explorer, model, sample, {0: flipped})
        assert int(shown.get_attribute("data-predicted")) == max(range(2), key=lambda k: probs[k])
        assert float(shown.get_attribute("data-probability")) == pytest.approx(max(probs), abs=1e-6)
        assert f"{100 * max(probs):.1f} %" in shown.text
    assert f"fix=0%3A{flipped:g}" in browser.current_url  # the state is in the address: reload or share it
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.CSS_SELECTOR, 'a[data-policy="oracle"]').click()
    _wait_for_swap(browser, loaded)
    assert "oracle corrected" in browser.find_element(By.ID, "message").text
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.ID, "reset").click()
    _wait_for_swap(browser, loaded)
    shown = browser.find_element(By.ID, "prediction-0")
    assert float(shown.get_attribute("data-probability")) == pytest.approx(max(_library_probs(explorer, name, sample, {})), abs=1e-6)


def test_the_page_keeps_its_state_in_every_control_and_is_accessible(client):
    page = client.get("/explore", params={"model": "xor-cem-seed3", "sample": 7, "fix": "1:0", "policy": "random"}).text
    form = page[page.index('<form method="get" action="/explore" id="choose">'):page.index("</form>")]
    assert '<input type="hidden" name="sample" value="7">' in form and '<input type="hidden" name="fix" value="1:0">' in form
    assert "onchange" not in page and '<button type="submit" id="apply">apply</button>' in form  # no navigation on a change
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert '<a class="skip" href="#concepts">' in page and 'id="concepts"' in page
    assert page.index('<div id="errors" role="alert"') < page.index('<main id="main">')  # errors live outside the grid
    assert 'aria-live="polite"' in page
    assert '<input name="class" list="class-names"' in page and '<datalist id="class-names"><option value=' in page
    unknown = client.get("/explore", params={"model": "xor-cem-seed3", "class": "zebra"})
    assert unknown.status_code == 400 and "unknown class" in unknown.text  # a name typed wrong is said so
    for value, label in (("1", "present"), ("0", "absent")):
        pressed = "true" if value == "0" else "false"
        assert re.search(rf'<button class="set[^"]*" name="set" value="1:{value}" data-value="{value}" data-key="set-1-{value}" '
                         rf'aria-pressed="{pressed}" aria-label="[^"]+: {label}"', page)
    switched = client.get("/explore", params={"model": "xor-cbm-seed3", "sample": 7, "fix": "1:0", "fix_for": "xor-cem-seed3"})
    assert 'data-sample="7" data-fix="1:0"' in switched.text  # same concepts: the corrections carry over
    foreign = client.get("/explore", params={"model": "xor-cbm-seed3", "sample": 7, "fix": "1:0", "fix_for": "other"})
    assert "corrections dropped" in foreign.text and 'data-fix=""' in foreign.text


def test_the_diamond_counts_part_of_a_group_and_the_panel_shows_the_change(client):
    import torch

    from conceptlab.explorer.curve import curve_svg

    units = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=torch.bool)
    units[1, :2], units[0, :2] = True, False
    units[2, 0] = True
    assert Corrections({2: 1.0}).units_set(units).tolist() == [0.5, 0.0, 0.0]  # one of group 0's two concepts
    assert Corrections({0: 1.0, 2: 1.0}).units_set(units).tolist() == [0.5, 0.5, 1.0]
    points = [{"n": n, "true_probability": p, "correct": p > 0.5, "unit": ""} for n, p in enumerate((0.2, 0.6, 0.9))]
    svg = curve_svg(points, "random", (0.5, 0.4, 1))
    assert "1 concept(s) set, 0.5 group(s) worth" in svg and ">0</text>" in svg and ">2</text>" in svg  # x ticks
    page = client.get("/explore", params={"model": "xor-cem-seed3", "sample": 6, "fix": "0:1,1:0"}).text
    assert re.search(r'id="change-0">p\(true class\) [0-9.]+ &rarr; [0-9.]+\s+\([+-][0-9.]+\)', page)


def test_the_list_pages_through_the_whole_test_set_sorts_and_marks_mistakes(client, explorer):
    name = "xor-cem-seed3"
    n = explorer.n_samples(name)
    listed = lambda page: [int(s) for s in re.findall(r'data-key="sample-(\d+)"', page)]  # noqa: E731
    far = client.get("/explore", params={"model": name, "sample": n - 1}).text
    assert n - 1 in listed(far) and f"page {-(-n // 100)} of {-(-n // 100)}" in far  # the page holding the sample
    assert listed(client.get("/explore", params={"model": name, "page": 1}).text) == list(range(100, min(200, n)))
    assert client.get("/explore", params={"model": name, "page": 99}).status_code == 400
    ordered = explorer.ordered(name, explorer.samples(name), "confidence")
    page = client.get("/explore", params={"model": name, "order": "confidence"}).text
    assert listed(page) == ordered[:100]
    confidence = [max(explorer.view(name, s, Corrections({})).class_probs) for s in ordered[:20]]
    assert confidence == sorted(confidence)  # least confident first
    wrong = explorer.samples(name, "misclassified")
    first_page = client.get("/explore", params={"model": name}).text
    assert all(f'miss" data-key="sample-{s}"' in first_page for s in wrong if s < 100)
    assert '<input type="hidden" name="order" value="confidence">' in page and 'name="sample" min="0"' in page


def test_bulk_corrections_give_the_library_accuracy_and_a_session_exports(client, explorer):
    from conceptlab.models import Intervention, predict
    from conceptlab.models.heads import predicted_class

    name = "xor-cbm-seed3"
    test, model = explorer.data(name).test, explorer.model(name).model
    mask = torch.zeros_like(test.c, dtype=torch.bool)
    mask[:, 0] = True
    after = predicted_class(predict(model, test.x, Intervention(mask, test.c)).task_logits, explorer.threshold(name))
    expected = float((after == test.y).float().mean())
    assert explorer.bulk_accuracy(name, [0])["after"] == pytest.approx(expected)
    page = client.get("/bulk", params={"model": name, "sample": 5, "fix": "0:1", "scope": "all"})
    assert page.status_code == 200 and f"-&gt; {100 * expected:.1f} %" in page.text
    assert 'data-fix="0:1"' in page.text  # the sample's own corrections are kept
    in_class = client.get("/bulk", params={"model": name, "sample": 5, "fix": "0:1", "scope": "class"}).text
    assert "test samples of" in in_class
    assert client.get("/bulk", params={"model": name, "sample": 5, "fix": ""}).status_code == 400
    exported = client.get("/export", params={"model": name, "sample": 5, "fix": "0:1", "compare": "xor-cem-seed3"})
    (record,) = exported.json()["samples"]
    assert exported.headers["content-disposition"] == 'attachment; filename="xor-cbm-seed3-sample5.json"'
    assert list(record["corrections"].values()) == [1.0] and [m["model"] for m in record["models"]] == [name, "xor-cem-seed3"]
    view = explorer.view(name, 5, Corrections.parse("0:1", 2))
    assert record["models"][0]["class_probs"] == dict(zip(view.classes, view.class_probs))
    rows = list(csv.DictReader(io.StringIO(client.get("/export", params={"model": name, "sample": 5, "format": "csv"}).text)))
    assert len(rows) == 1 and rows[0]["predicted"] == view.classes[explorer.view(name, 5, Corrections({})).predicted]


def test_a_session_of_several_samples_exports_each_with_its_own_corrections(client, explorer):
    name = "xor-cbm-seed3"
    query = [("model", name), ("sample", 0), ("fix", "1:0,0:1"), ("sample", 9), ("fix", ""), ("sample", 4), ("fix", "0:0")]
    session = client.get("/export", params=query)
    assert session.headers["content-disposition"] == 'attachment; filename="xor-cbm-seed3-session.json"'
    records = session.json()["samples"]
    assert [r["sample"] for r in records] == [0, 9, 4]
    assert list(records[0]["corrections"]) == ["x2 > 0.5", "x1 > 0.5"]  # in the order they were made
    for record, fix in zip(records, ["1:0,0:1", "", "0:0"]):
        view = explorer.view(name, record["sample"], Corrections.parse(fix, 2))
        assert record["models"][0]["class_probs"] == dict(zip(view.classes, view.class_probs))
    rows = list(csv.DictReader(io.StringIO(client.get("/export", params=query + [("format", "csv")]).text)))
    assert [int(r["sample"]) for r in rows] == [0, 9, 4] and rows[0]["corrections"] == "x2 > 0.5=0;x1 > 0.5=1"
    mismatched = client.get("/export", params=[("model", name), ("sample", 0), ("sample", 1), ("fix", "0:1")])
    assert mismatched.status_code == 400 and "one fix per sample" in mismatched.text


def test_a_policy_applied_in_bulk_gives_the_library_intervention_curve(client, explorer):
    """The bulk policy's accuracy is intervention_curve's point at k on the same samples (the
    bench's number), for the whole split and for one class; its message lands on the page."""
    name = "xor-cem-seed3"
    data = explorer.data(name)
    curve = intervention_curve(explorer.model(name).model, data.test, "uncertainty", repeats=1, seed=explorer.seed)
    result = explorer.bulk_policy_accuracy(name, "uncertainty", 1)
    assert (result["before"], result["after"]) == (curve.accuracy_mean[0], curve.accuracy_mean[1])
    assert result["after"] > result["before"]  # correcting a concept helps this weak CEM
    rows = (data.test.y == 1).nonzero().flatten()
    in_class = intervention_curve(explorer.model(name).model, data.test.subset(rows), "uncertainty", repeats=1, seed=explorer.seed)
    class_name = explorer.model(name).info.task_names[1]
    assert explorer.bulk_policy_accuracy(name, "uncertainty", 2, class_name=class_name)["after"] == in_class.accuracy_mean[2]
    page = client.get("/bulk", params={"model": name, "sample": 0, "scope": "all", "apply_policy": "uncertainty", "steps": 1})
    assert page.status_code == 200 and f"uncertainty&#39;s first 1 correction(s) on all {len(data.test)} test samples" in page.text
    assert f"-&gt; {100 * curve.accuracy_mean[1]:.1f} %" in page.text and 'data-sample="0"' in page.text
    assert client.get("/bulk", params={"model": name, "sample": 0, "apply_policy": "uncertainty", "steps": 3}).status_code == 400
    assert client.get("/bulk", params={"model": name, "sample": 0, "apply_policy": "learned", "steps": 1}).status_code == 400


def test_the_history_lists_each_step_with_the_library_prediction_after_it(client, explorer):
    """Corrections keep the order they were made in; the history decodes each prefix (a policy
    step is one step) and ends at the page's prediction; a redirect keeps sample 0."""
    name = "xor-cem-seed3"
    fixed = Corrections({}).with_value(1, 0).with_value(0, 1)
    assert fixed.text() == "1:0,0:1" and fixed.with_value(1, 1).text() == "0:1,1:1"  # set again: moves to the end
    history = explorer.history(name, 0, fixed)
    assert [(h["step"], h["unit"], h["set"]) for h in history] == [(0, None, []), (1, "x2 > 0.5", [("x2 > 0.5", 0.0)]),
                                                                   (2, "x1 > 0.5", [("x1 > 0.5", 1.0)])]
    for step, prefix in zip(history, [{}, {1: 0.0}, {1: 0.0, 0: 1.0}]):
        assert step["true_probability"] == _library_probs(explorer, name, 0, prefix)[int(explorer.data(name).test.y[0])]
    page = client.get("/explore", params={"model": name, "sample": 0, "fix": fixed.text(), "compare": "xor-cbm-seed3"}).text
    table = page[page.index('id="history"'):page.index("</table>", page.index('id="history"'))]
    assert table.count("<tr><td>") == 3 and table.count("p(true) model") == 2  # both models, each step
    stepped = client.get("/step", params={"model": name, "sample": 0, "policy": "uncertainty"}, follow_redirects=False)
    assert "sample=0" in stepped.headers["location"]


def test_concept_examples_are_test_images_ranked_by_the_model(explorer):
    name = "xor-cem-seed3"
    examples = explorer.concept_examples(name, 0, k=5)
    p, truth = explorer.concept_probs(name)[:, 0], explorer.data(name).test.c[:, 0]
    assert all(truth[s] == 1 for s in examples["clearest"] + examples["missed"]) and all(truth[s] == 0 for s in examples["false_alarms"])
    assert p[examples["clearest"][0]] == p[truth == 1].max() and p[examples["missed"][0]] == p[truth == 1].min()
    assert p[examples["false_alarms"][0]] == p[truth == 0].max() and len(examples["clearest"]) == 5
    with pytest.raises(ValueError, match="concepts 0 to 1"):
        explorer.concept_examples(name, 2)


def test_a_click_on_the_plane_opens_the_sample_drawn_there(client, explorer, browser, served):
    from selenium.webdriver.support.ui import WebDriverWait

    from conceptlab.explorer.plane import plane_pixels

    name = "xor-cem-seed3"
    data = explorer.data(name)
    view = plane_view(data.name, data.test.features, explorer.model(name).info.concept_names)
    x, y = plane_pixels(view)[17].tolist()
    assert client.get("/api/plane-pick", params={"model": name, "x": x, "y": y}).json() == {"sample": 17}
    browser.get(f"{served}/explore?model={name}&sample=3&fix=0:1")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.getElementById('input-plane').complete"))
    browser.execute_script(
        "const img = document.getElementById('input-plane'); const box = img.getBoundingClientRect();"
        "img.dispatchEvent(new MouseEvent('click', {bubbles: true, clientX: box.left + arguments[0] * box.width / 320,"
        " clientY: box.top + arguments[1] * box.height / 320}));", x, y)
    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const s = document.querySelector('section.sample'); return s && s.dataset.sample") == "17")
    assert "sample=17" in browser.current_url and "fix=" not in browser.current_url  # a new sample starts uncorrected


def test_an_unknown_model_is_a_readable_page_and_an_api_error_stays_json(client):
    page = client.get("/explore", params={"model": "nope"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no model named &#39;nope&#39;" in page.text and "back to the explorer" in page.text
    assert client.get("/api/view", params={"model": "nope", "sample": 0}).json() == {"error": "no model named 'nope'"}


def test_in_a_real_browser_fast_clicks_are_all_applied_in_order_and_focus_stays(browser, served, explorer):
    from selenium.webdriver.common.by import By

    name, sample = "xor-cem-seed3", 6
    browser.get(f"{served}/explore?model={name}&sample={sample}")
    first = browser.find_element(By.CSS_SELECTOR, '[data-key="set-0-1"]')
    second = browser.find_element(By.CSS_SELECTOR, '[data-key="set-1-0"]')
    browser.execute_script("arguments[0].click(); arguments[1].click();", first, second)  # the second before the first returns
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda d: d.execute_script(
        "const s = document.querySelector('section.sample'); return !document.getElementById('main').hasAttribute('aria-busy')"
        " && s && s.dataset.fix") == "0:1,1:0")
    shown = browser.find_element(By.ID, "prediction-0")
    probs = _library_probs(explorer, name, sample, {0: 1.0, 1: 0.0})
    assert float(shown.get_attribute("data-probability")) == pytest.approx(max(probs), abs=1e-6)
    assert browser.switch_to.active_element.get_attribute("data-key") == "set-1-0"  # focus stays on the last control clicked
    assert browser.find_element(By.CSS_SELECTOR, '[data-key="set-1-0"]').get_attribute("aria-pressed") == "true"
    assert browser.find_element(By.CSS_SELECTOR, '#choose input[name="fix"]').get_attribute("value") == "0:1,1:0"
    browser.get(f"{served}/explore?model={name}&sample={sample}&fix=0:1")
    browser.execute_script("followLive('/explore?model=nope', true, null)")
    WebDriverWait(browser, 30).until(lambda d: d.execute_script("return document.getElementById('errors').textContent"))
    assert browser.find_element(By.ID, "errors").text == "no model named 'nope'"  # the message, as text, above the page
    assert browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-fix") == "0:1"  # the page is kept


def test_a_setter_works_without_javascript_and_refuses_what_it_cannot_set(client):
    """The setters are buttons of one form sent to /set, which applies one change and returns to
    the page whose address holds the new corrections (sample 0 and the rest of the state kept)."""
    state = {"model": "xor-cem-seed3", "sample": 0, "fix": "1:0", "compare": "xor-cbm-seed3", "policy": "random"}
    moved = client.get("/set", params={**state, "set": "0:1"}, follow_redirects=False)
    assert moved.status_code == 303
    assert parse_qs(urlsplit(moved.headers["location"]).query) == {
        "model": ["xor-cem-seed3"], "sample": ["0"], "fix": ["1:0,0:1"], "compare": ["xor-cbm-seed3"], "policy": ["random"],
        "filter": ["all"]}
    back = client.get("/set", params={**state, "set": "1:predicted"}, follow_redirects=False)
    assert "fix=" not in back.headers["location"]
    for bad in ("0:2", "x:1", "9:1", "0"):
        assert client.get("/set", params={**state, "set": bad}).status_code == 400


def test_in_a_real_browser_a_correction_redraws_only_what_changed(browser, served):
    """The new page is merged into the old (morph): nodes that did not change are the same nodes
    afterwards (a mark set on them survives), the clicked row's buttons change in place."""
    from selenium.webdriver.common.by import By

    browser.get(f"{served}/explore?model=xor-cem-seed3&sample=6&fix=1:0")
    browser.execute_script("document.querySelector('a[data-key=\"sample-7\"]').mark = 1;"
                           "document.querySelector('[data-key=\"set-0-1\"]').mark = 2;"
                           "document.getElementById('input-plane').mark = 3")
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.CSS_SELECTOR, '[data-key="set-0-1"]').click()
    _wait_for_swap(browser, loaded)
    assert browser.execute_script("return [document.querySelector('a[data-key=\"sample-7\"]').mark,"
                                  "document.querySelector('[data-key=\"set-0-1\"]').mark,"
                                  "document.getElementById('input-plane').mark]") == [1, 2, 3]
    assert browser.find_element(By.CSS_SELECTOR, '[data-key="set-0-1"]').get_attribute("aria-pressed") == "true"
    assert browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-fix") == "1:0,0:1"
    assert browser.find_element(By.ID, "busy").get_attribute("hidden") is not None  # the badge is gone again


def test_in_a_real_browser_the_session_export_holds_every_sample_corrected(browser, served):
    """Corrections on two samples, a policy applied in bulk through its form (the page is swapped,
    not reloaded) and the history of the last sample; the session link then lists both samples."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    name = "xor-cem-seed3"
    browser.get(f"{served}/explore?model={name}&sample=6")
    browser.execute_script("sessionStorage.clear()")
    for selector in ('[data-key="set-0-1"]', 'a[data-key="sample-7"]', '[data-key="set-1-0"]', '[data-key="set-0-0"]'):
        loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
        browser.find_element(By.CSS_SELECTOR, selector).click()
        _wait_for_swap(browser, loaded)
    steps = browser.find_elements(By.CSS_SELECTOR, "#history tbody tr")
    assert [row.find_elements(By.TAG_NAME, "td")[1].text for row in steps] == ["(none)", "x2 > 0.5=0", "x1 > 0.5=0"]
    browser.execute_script("document.getElementById('main').dataset.marker = 'kept'")  # gone if the page reloads
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.CSS_SELECTOR, 'form.bulk-policy button[value="all"]').click()
    _wait_for_swap(browser, loaded)
    assert "first 2 correction(s) on all" in browser.find_element(By.ID, "message").text
    assert browser.execute_script("return document.getElementById('main').dataset.marker") == "kept"
    link = browser.find_element(By.ID, "session-json")
    browser.execute_script("arguments[0].addEventListener('click', (e) => e.preventDefault())", link)  # no download
    link.click()
    WebDriverWait(browser, 10).until(lambda d: "sample=7" in link.get_attribute("href"))
    query = parse_qs(urlsplit(link.get_attribute("href")).query)
    assert dict(zip(query["sample"], query["fix"])) == {"6": "0:1", "7": "1:0,0:0"}


@pytest.mark.parametrize("width", [1400, 420])
def test_an_automated_accessibility_audit_finds_no_serious_violation(browser, served, width):
    from axe_core_python.selenium import Axe

    browser.set_window_size(width, 1000)
    try:
        browser.get(f"{served}/explore?model=xor-cem-seed3&sample=6&fix=0:1&compare=xor-cbm-seed3")
        results = Axe().run(browser)
        viewport, page_width = browser.execute_script(
            "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
    finally:
        browser.set_window_size(1400, 1000)
    serious = [(v["id"], v["impact"], len(v["nodes"])) for v in results["violations"] if v["impact"] in ("serious", "critical")]
    assert serious == []
    assert page_width <= viewport  # nothing runs off the side: no sideways scrolling at this width


@pytest.fixture(scope="module")
def cub_bench(tmp_path_factory) -> tuple[Path, Path]:
    """A bench folder of a CEM and a PCBM on a tiny CUB archive, and the archive."""
    from .cub_fixture import build_cub

    tmp_path = tmp_path_factory.mktemp("cub-explorer")
    archive = build_cub(tmp_path / "cub", images_per_class=10, train_per_class=8)  # a CAV needs 4 images a side
    config = tmp_path / "tinycub.yaml"
    config.write_text(
        "name: tinycub\n"
        f"dataset: {{name: cub, backbone: resnet18, weights: null, image_size: 32, min_classes: 1, cache_dir: {tmp_path / 'cache'}}}\n"
        "models: [cem, pcbm]\nseeds: 1\nmodel: {hidden: [16], embedding_size: 4, latent_dim: 16, bank_examples: 4}\n"
        "train: {max_epochs: 2, batch_size: 8, posthoc: {tol: 1.0e-2}}\nevaluation: {intervention_repeats: 1, intervention_policies: [random], "
        "concept_alignment: false, purity: false}\n"
    )
    out = tmp_path / "out"
    assert cli.main(["bench", str(config), "--root", str(archive), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
    return out, archive


def test_cub_style_data_serves_its_images_and_many_class_heads(cub_bench, tmp_path, capsys):
    """On image data (a tiny CUB archive): the test images are served byte for byte, a 3-class head
    is explained through softmax, concepts come in their groups, and a PCBM's bank (saved by the
    bench beside its checkpoint) gives counterfactuals; a moved archive is found with --data."""
    out, archive = cub_bench
    assert len(list((out / "checkpoints").glob(f"*{BANK_SUFFIX}"))) == 1  # the PCBM's bank, beside its checkpoint
    capsys.readouterr()
    moved = tmp_path / "elsewhere"
    archive.rename(moved)
    try:
        assert cli.main(["explore", str(out)]) == 2
        assert "conceptlab explore --data PATH" in capsys.readouterr().err
        explorer = open_explorer([out], data_root=moved)
        client = TestClient(create_app(explorer), base_url="http://localhost")
        cem_name = next(n for n in explorer.models if "-cem-" in n)
        pcbm_name = next(n for n in explorer.models if "-pcbm-" in n)
        data = explorer.data(cem_name)
        assert len(data.image_paths) == len(data.test) and all(str(p).startswith(str(moved)) for p in data.image_paths)
        assert client.get(f"/image/{cem_name}/1").content == data.image_paths[1].read_bytes()
        assert client.get(f"/image/{cem_name}/{len(data.test)}").status_code == 404
        for name in (cem_name, pcbm_name):
            model = explorer.model(name)
            view = client.get("/api/view", params={"model": name, "sample": 1, "fix": "0:1,5:0"}).json()
            mask = torch.zeros(1, model.info.n_concepts, dtype=torch.bool)
            mask[0, [0, 5]] = True
            values = torch.zeros(1, model.info.n_concepts)
            values[0, 0] = 1.0
            with torch.no_grad():
                logits = model.model(data.test.x[1:2], Intervention(mask, values)).task_logits
            assert len(view["class_probs"]) == 3 and view["class_probs"] == class_log_probs(logits)[0].exp().tolist()
            assert {g: [r["index"] for r in rows] for g, rows in view["concepts"].items()} == \
                {g: list(i) for g, i in model.info.concept_groups.items()}
        page = client.get("/explore", params={"model": pcbm_name, "sample": 0})
        assert page.status_code == 200 and 'id="input-image"' in page.text and 'id="input-plane"' not in page.text
        assert f'href="/concept?model={pcbm_name}&amp;concept=0"' in page.text  # each concept's name opens its examples
        examples = client.get("/concept", params={"model": pcbm_name, "concept": 0}).text
        shown = explorer.concept_examples(pcbm_name, 0)
        assert examples.count("<img ") == sum(map(len, shown.values())) and f'src="/image/{pcbm_name}/{shown["clearest"][0]}"' in examples
        assert 'id="projection-note"' in page.text  # a PCBM's concept "p" is a projection score, and the page says so
        assert 'id="projection-note"' not in client.get("/explore", params={"model": cem_name, "sample": 0}).text
        result = client.get("/api/counterfactual", params={"model": pcbm_name, "sample": 0}).json()
        assert result["target"] in model.info.task_names and set(result) >= {"add", "remove", "success"}
    finally:
        moved.rename(archive)  # where the bench read it, for the next test


def test_in_a_real_browser_image_pages_pass_the_audit_and_show_concept_examples(cub_bench, browser):
    """On image data the explorer page and a concept's example page pass the accessibility audit
    at both widths, and the examples' images load and open their samples."""
    from axe_core_python.selenium import Axe
    from selenium.webdriver.common.by import By

    out, archive = cub_bench
    explorer = open_explorer([out], data_root=archive)
    pcbm = next(n for n in explorer.models if "-pcbm-" in n)
    try:
        with _serving(explorer) as address:
            for width in (1400, 420):
                browser.set_window_size(width, 1000)
                for path in (f"/explore?model={pcbm}&sample=0&fix=0:1", f"/concept?model={pcbm}&concept=0"):
                    browser.get(f"{address}{path}")
                    serious = [(v["id"], len(v["nodes"])) for v in Axe().run(browser)["violations"] if v["impact"] in ("serious", "critical")]
                    assert serious == [], (width, path)
            images = browser.find_elements(By.CSS_SELECTOR, "ul.gallery img")
            assert images and all(browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                                  for i in images[:3])
            first = explorer.concept_examples(pcbm, 0)["clearest"][0]
            browser.find_element(By.CSS_SELECTOR, "#clearest a").click()
            assert browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-sample") == str(first)
    finally:
        browser.set_window_size(1400, 1000)


TAP_TARGETS = ("button.set, a.button, nav.samples a, header select, header input, header button, form.goto input, "
               "form.goto select, form.goto button, form.bulk-policy button, form.bulk-policy select, form.bulk-policy input")


def _in_view(driver, element) -> bool:
    return driver.execute_script("const r = arguments[0].getBoundingClientRect();"
                                 "return r.height > 0 && r.top >= 0 && r.bottom <= window.innerHeight", element)


@pytest.mark.parametrize("width", [1400, 420])
def test_in_a_real_browser_the_prediction_stays_in_view_down_a_long_table(cub_bench, browser, width):
    """On image data with many concepts and two models: correcting the last concept of the table
    leaves the prediction in view (the panel on a wide screen, a one-line summary on a phone) and
    focus on the button; on a phone every control is a 40-pixel tap target and nothing runs off
    the side."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    out, archive = cub_bench
    explorer = open_explorer([out], data_root=archive)
    pcbm = next(n for n in explorer.models if "-pcbm-" in n)
    cem_name = next(n for n in explorer.models if "-cem-" in n)
    browser.set_window_size(width, 800)
    try:
        with _serving(explorer) as address:
            browser.get(f"{address}/explore?model={pcbm}&sample=0&compare={cem_name}")
            n_concepts = explorer.model(pcbm).info.n_concepts
            assert n_concepts > 20
            WebDriverWait(browser, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "tr.concept")) == n_concepts)
            rows = browser.find_elements(By.CSS_SELECTOR, "tr.concept")
            last = rows[-1].find_element(By.CSS_SELECTOR, 'button[data-value="1"]')
            key = last.get_attribute("data-key")
            browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", last)
            loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
            last.click()
            _wait_for_swap(browser, loaded)
            assert browser.switch_to.active_element.get_attribute("data-key") == key
            predicted = browser.find_element(By.CSS_SELECTOR, "#prediction-0 .predicted-name").get_attribute("textContent")
            if width > 800:
                assert _in_view(browser, browser.find_element(By.ID, "prediction-0"))
                assert not browser.find_element(By.ID, "summary").is_displayed()
            else:
                summary = browser.find_element(By.ID, "summary")
                assert _in_view(browser, summary) and summary.text.startswith(f"model 1: {predicted}") and "p(true)" in summary.text
                heights = browser.execute_script(
                    "return [...document.querySelectorAll(arguments[0])].filter((e) => e.offsetParent)"
                    ".map((e) => [e.dataset.key || e.name || e.tagName, e.getBoundingClientRect().height])", TAP_TARGETS)
                assert len(heights) > 100 and [h for h in heights if h[1] < 39.5] == []
                viewport, page_width = browser.execute_script(
                    "return [document.documentElement.clientWidth, document.documentElement.scrollWidth]")
                assert page_width <= viewport
    finally:
        browser.set_window_size(1400, 1000)


def test_in_a_real_browser_a_dropdown_waits_for_apply_which_keeps_the_sample_and_corrections(browser, served):
    """An arrow key on a header dropdown changes its value and nothing else (no navigation); "apply"
    then opens the comparison on the same sample with the same corrections."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    start = f"{served}/explore?model=xor-cem-seed3&sample=6&fix=0:1"
    browser.get(start)
    browser.execute_script("document.getElementById('main').dataset.marker = 'kept'")  # gone if the page reloads
    compare = browser.find_element(By.CSS_SELECTOR, '#choose select[name="compare"]')
    compare.send_keys(Keys.ARROW_DOWN)
    chosen = compare.get_attribute("value")
    assert chosen and browser.current_url == start
    assert browser.execute_script("return document.getElementById('main').dataset.marker") == "kept"
    browser.find_element(By.ID, "apply").click()
    _settled(browser, lambda d: d.find_elements(By.ID, "prediction-1"))  # the comparison's page is shown
    query = parse_qs(urlsplit(browser.current_url).query)
    assert query["compare"] == [chosen] and query["sample"] == ["6"] and query["fix"] == ["0:1"]
    assert browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-fix") == "0:1"
    assert browser.find_element(By.ID, "prediction-1").get_attribute("data-predicted") is not None


def test_in_a_real_browser_the_list_pages_goes_to_a_sample_sorts_and_searches_a_class(browser, served, explorer):
    """Over the whole test set in the browser: the next page of the list, "go to sample", a sort
    order and a class typed by name, each keeping the corrections where the sample stays."""
    from selenium.webdriver.common.by import By

    name = "xor-cem-seed3"
    n = explorer.n_samples(name)
    assert n > 100  # more than one page
    listed = lambda d: [int(a.get_attribute("data-key").split("-")[1]) for a in d.find_elements(By.CSS_SELECTOR, "nav.samples ol a")]  # noqa: E731
    browser.get(f"{served}/explore?model={name}&sample=6&fix=0:1")
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.CSS_SELECTOR, '[data-key="page-next"]').click()
    _wait_for_swap(browser, loaded)
    assert listed(browser) == list(range(100, n)) and "page=1" in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-fix") == "0:1"  # same sample, same corrections
    field = browser.find_element(By.CSS_SELECTOR, 'form.goto input[name="sample"]')
    field.clear()
    field.send_keys(str(n - 1))
    browser.find_element(By.CSS_SELECTOR, "form.goto button").click()
    _settled(browser, lambda d: d.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-sample") == str(n - 1))
    assert browser.find_element(By.CSS_SELECTOR, "nav.samples a.current").get_attribute("data-key") == f"sample-{n - 1}"
    from selenium.webdriver.support.select import Select

    Select(browser.find_element(By.CSS_SELECTOR, 'form.goto select[name="order"]')).select_by_value("confidence")
    browser.find_element(By.CSS_SELECTOR, "form.goto button").click()
    ordered = explorer.ordered(name, explorer.samples(name), "confidence")
    expected = ordered[(ordered.index(n - 1) // 100) * 100:][:100]  # the page holding the sample, least confident first
    _settled(browser, lambda d: listed(d) == expected)
    assert "order=confidence" in browser.current_url
    wanted = explorer.model(name).info.task_names[1]
    field = browser.find_element(By.CSS_SELECTOR, '#choose input[name="class"]')
    field.send_keys(wanted)
    browser.find_element(By.ID, "apply").click()
    in_class = set(explorer.samples(name, class_name=wanted))
    _settled(browser, lambda d: (shown := listed(d)) and set(shown) <= in_class)
    assert "class=" in browser.current_url


def test_in_a_real_browser_a_counterfactual_is_applied_with_one_click(browser, served, explorer):
    from selenium.webdriver.common.by import By

    name = "xor-cem-seed3"
    suggestions = ((s, explorer.counterfactual(name, s)) for s in explorer.samples(name, "misclassified"))
    sample, suggestion = next((s, r) for s, r in suggestions if r["add"] or r["remove"])
    browser.get(f"{served}/explore?model={name}&sample={sample}")
    loaded = browser.execute_script("return document.getElementById('main').dataset.loaded")
    browser.find_element(By.CSS_SELECTOR, '[data-key="apply-cce"]').click()
    _wait_for_swap(browser, loaded)
    names = list(explorer.model(name).info.concept_names)
    expected = {names.index(c): 1.0 for c, _ in suggestion["add"]} | {names.index(c): 0.0 for c, _ in suggestion["remove"]}
    shown = browser.find_element(By.CSS_SELECTOR, "section.sample").get_attribute("data-fix")
    assert Corrections.parse(shown, len(names)).values == expected
    for index, value in expected.items():
        button = browser.find_element(By.CSS_SELECTOR, f'[data-key="set-{index}-{value:g}"]')
        assert button.get_attribute("aria-pressed") == "true"


def test_ctrl_c_stops_the_explorer_while_requests_are_in_flight(folder):
    """Requests keep arriving when Ctrl+C lands: the server stops (after at most a short grace
    period for them) and says so, without the bench's resume message."""
    import signal

    import httpx

    process = subprocess.Popen([sys.executable, "-m", "conceptlab.cli", "explore", str(folder / "checkpoints" / "xor-cem-seed3.pt"),
                                "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=with_default_sigint)
    stop = threading.Event()
    answered = threading.Semaphore(0)

    def ask(base: str, sample: int) -> None:
        with httpx.Client(timeout=60) as client:
            while not stop.is_set():
                try:
                    client.get(f"{base}/api/curve", params={"model": "xor-cem-seed3", "sample": sample})
                except httpx.HTTPError:
                    return
                answered.release()

    try:
        found = re.search(r"http://127.0.0.1:(\d+)/", process.stdout.readline())
        assert found, process.stderr.read()
        clients = [threading.Thread(target=ask, args=(f"http://127.0.0.1:{found.group(1)}", i), daemon=True) for i in range(4)]
        for client in clients:
            client.start()
        assert answered.acquire(timeout=120), "no request was answered"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)  # a ceiling for a loaded machine; it takes about 2 s here
    finally:
        stop.set()
        if process.poll() is None:
            process.kill()
    err = process.stderr.read()
    assert process.returncode == 130 and "conceptlab: interrupted; explorer stopped" in err and "rerun" not in err, err


SLOW_SERVER = """
import sys, time
from pathlib import Path
from conceptlab import cli
from conceptlab.explorer.session import Explorer

def slow_curve(*args, **kwargs):
    Path(sys.argv[2]).touch()
    time.sleep(600)

Explorer.curve = slow_curve
sys.exit(cli.main(["explore", sys.argv[1], "--port", "0"]))
"""


def test_ctrl_c_does_not_wait_for_a_long_request(folder, tmp_path):
    """A request computing for 10 minutes (a counterfactual on a large model, say) does not hold the
    process: Ctrl+C gives requests in flight a short grace period and then drops them; served from
    the main thread, the interpreter waited for such a request to finish."""
    import signal

    import httpx

    script, entered = tmp_path / "slow_server.py", tmp_path / "entered"
    script.write_text(SLOW_SERVER)
    process = subprocess.Popen([sys.executable, str(script), str(folder / "checkpoints" / "xor-cem-seed3.pt"), str(entered)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
                               preexec_fn=with_default_sigint)
    try:
        port = int(re.search(r"http://127.0.0.1:(\d+)/", process.stdout.readline()).group(1))
        threading.Thread(target=lambda: httpx.get(f"http://127.0.0.1:{port}/api/curve?model=xor-cem-seed3&sample=0",
                                                  timeout=700), daemon=True).start()
        deadline = time.monotonic() + 120
        while not entered.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert entered.exists(), "the slow request never started"
        process.send_signal(signal.SIGINT)
        process.wait(timeout=300)  # far below the request's 600 s; about 2 s here
    finally:
        if process.poll() is None:
            process.kill()
    err = process.stderr.read()
    assert process.returncode == 130 and "conceptlab: interrupted; explorer stopped" in err, err


def test_the_explorer_opens_a_model_with_categorical_concepts_and_sets_a_value_with_its_group(tmp_path):
    from conceptlab.bench import parse_spec, run_grid

    spec = parse_spec({"dataset": {"name": "digits", "size": 200}, "models": ["cem"], "seeds": 1,
                       "train": {"max_epochs": 2}, "evaluation": {"intervention_policies": ["random"],
                                                                  "intervention_repeats": 1}}, "digits")
    (record,) = run_grid([spec], tmp_path, workers=1, progress=False).records()
    model = load_explorer_model(Path(record["checkpoint"]))
    explorer = Explorer([model])
    categorical = model.info.categorical_indices()
    first = Corrections({}).with_value(3, 1, categorical)  # left digit = 3
    assert first.values == {i: float(i == 3) for i in range(10)}
    second = first.with_value(7, 1, categorical)  # left digit = 7 replaces it
    assert second.values == {i: float(i == 7) for i in range(10)}
    assert second.with_value(7, None, categorical).values == {}
    view = explorer.view(model.name, 0, second)
    assert view is not None
    client = TestClient(create_app(explorer), base_url="http://127.0.0.1:8765")
    page = client.get("/", params={"model": model.name, "sample": 0, "fix": second.text()})
    assert page.status_code == 200 and "left=7" in page.text


@pytest.mark.parametrize("key", ["mixcem", "probcbm", "whitening"])
def test_each_new_model_family_opens_in_the_explorer_and_steps_a_policy(tmp_path, key):
    from conceptlab.bench import parse_spec, run_grid

    spec = parse_spec({"dataset": {"name": "xor", "size": 200}, "models": [key], "seeds": 1,
                       "model": {"hidden": [8], "latent_dim": 8, "embedding_size": 4}, "train": {"max_epochs": 2},
                       "evaluation": {"intervention_policies": ["random", "uncertainty", "concept-uncertainty"],
                                      "intervention_repeats": 1}}, "x")
    (record,) = run_grid([spec], tmp_path, workers=1, progress=False).records()
    assert record["status"] == "ok" and set(record["interventions"]) >= {"random", "uncertainty"}
    # the policy that reads reported uncertainty runs for ProbCBM and is skipped, with the reason, for the others
    assert ("concept-uncertainty" in record["interventions"]) == (key == "probcbm")
    model = load_explorer_model(Path(record["checkpoint"]))
    explorer = Explorer([model])
    corrected = Corrections({}).with_value(0, 1)
    assert explorer.view(model.name, 0, corrected) is not None
    _, stepped = explorer.next_step(model.name, 0, corrected, policy="uncertainty")
    assert len(stepped.values) == 2
