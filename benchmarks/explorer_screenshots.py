"""Screenshots of the explorer for the README, and how long one correction takes to answer.

Serves result folders (written by `conceptlab bench`) on a local port, drives headless Chromium
(Debian's chromium + chromium-driver) through a correction, and saves the pages as PNG at 1500 px
and at a 420-px phone width (``NAME-phone.png``). It times, through HTTP on the same server, the page
fragment a click fetches (median of 30), and in the browser the time from a click on a concept's
setter to the updated page (median of 20 clicks, alternating "present" and "predicted").

    python benchmarks/explorer_screenshots.py --synthetic results/xor-quick results/dot-quick --cub results/pcbm-cub100 --out docs
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from conceptlab.explorer.app import create_app
from conceptlab.explorer.serve import open_explorer

MAX_STEPS = 8


def start(explorer) -> tuple[str, uvicorn.Server]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(explorer), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def chromium(profile: Path) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1500,1300", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def click_and_wait(driver: webdriver.Chrome, selector: str) -> None:
    before = driver.execute_script("return document.getElementById('main').dataset.loaded")
    driver.find_element(By.CSS_SELECTOR, selector).click()
    WebDriverWait(driver, 60).until(lambda d: d.execute_script("return document.getElementById('main').dataset.loaded") != before)


CLICK_MS = """
const done = arguments[arguments.length - 1];
const main = document.getElementById("main");
const before = main.dataset.loaded;
const link = document.querySelector(arguments[0]);
const start = performance.now();
const watch = new MutationObserver(() => {
  if (main.dataset.loaded !== before) { watch.disconnect(); done(performance.now() - start); }
});
watch.observe(main, { attributes: true });
link.click();
"""


def browser_click_ms(driver: webdriver.Chrome, repeats: int = 20) -> float:
    """Median in-browser time from a click on concept 0's setter to the swapped page."""
    driver.set_script_timeout(60)
    times = [driver.execute_async_script(CLICK_MS, f'[data-key="set-0-{"1" if i % 2 == 0 else "predicted"}"]')
             for i in range(repeats)]
    return statistics.median(times)


def first_open_ms(base: str, model: str, samples: list[int], compare: str | None) -> float:
    """Median time to open a sample not seen before (its curve and counterfactual computed anew)."""
    times = []
    with httpx.Client(base_url=base, timeout=120) as client:
        for sample in samples:
            start = time.perf_counter()
            query = f"model={model}&sample={sample}&filter=misclassified" + (f"&compare={compare}" if compare else "")
            assert client.get(f"/explore?{query}&fragment=1").status_code == 200
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def fragment_ms(base: str, query: str, repeats: int = 30) -> float:
    with httpx.Client(base_url=base, timeout=120) as client:
        client.get(f"/explore?{query}&fragment=1")  # warm
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            assert client.get(f"/explore?{query}&fragment=1").status_code == 200
            times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def shoot(folder: Path, data_root: str | None, out: Path, stem: str, pick, driver: webdriver.Chrome) -> None:
    explorer = open_explorer([folder], data_root)
    primary, compare = pick(explorer)
    wrong = explorer.samples(primary, "misclassified")
    sample = wrong[0] if wrong else 0
    base, server = start(explorer)
    try:
        query = f"model={primary}&sample={sample}&filter=misclassified" + (f"&compare={compare}" if compare else "")
        driver.get(f"{base}/explore?{query}")
        steps = 0
        while steps < MAX_STEPS and driver.find_elements(By.CSS_SELECTOR, 'a[data-policy="uncertainty"]'):
            # the uncertainty policy's corrections, until the primary model is right or all groups are set
            click_and_wait(driver, 'a[data-policy="uncertainty"]')
            steps += 1
            if driver.find_elements(By.CSS_SELECTOR, "#prediction-0 .right"):
                break
        png = out / f"{stem}.png"
        driver.save_screenshot(str(png))
        Image.open(png).convert("RGB").quantize(256).save(png, optimize=True)  # a third of the bytes, same look
        in_browser = browser_click_ms(driver)
        driver.set_window_size(420, 900)
        try:
            driver.get(driver.current_url)
            phone = out / f"{stem}-phone.png"
            driver.save_screenshot(str(phone))
            Image.open(phone).convert("RGB").quantize(256).save(phone, optimize=True)
        finally:
            driver.set_window_size(1500, 1300)
        print(f"{stem}: {primary} sample {sample} ({len(wrong)} of {explorer.n_samples(primary)} misclassified), "
              f"{steps} uncertainty step(s); click to updated page in the browser: {in_browser:.0f} ms median; "
              f"a correction on an open sample: {fragment_ms(base, query + '&fix=0:1'):.0f} ms median, "
              f"opening a new sample: {first_open_ms(base, primary, (wrong or [0])[1:11], compare):.0f} ms median")
    finally:
        server.should_exit = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=Path, nargs="+", required=True,
                        help="bench folders of synthetic datasets (cem and cbm-fuzzy)")
    parser.add_argument("--cub", type=Path, help="bench folder of pcbm-cub100 (pcbm and cem)")
    parser.add_argument("--data", help="CUB root, when not where the bench read it")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as profile:
        driver = chromium(Path(profile))
        try:
            def synthetic(explorer):
                cem = next(n for n in explorer.models if "-cem-" in n)
                cbm = next((n for n in explorer.comparable(cem) if "-cbm-fuzzy-" in n), None)
                return cem, cbm

            for folder in args.synthetic:
                dataset = open_explorer([folder]).data(synthetic(open_explorer([folder]))[0]).name
                shoot(folder, None, args.out, f"explorer-{dataset}", synthetic, driver)
            if args.cub:
                def cub(explorer):
                    pcbm = next(n for n in explorer.models if "-pcbm-" in n)
                    return pcbm, next((n for n in explorer.comparable(pcbm) if "-cem-" in n), None)

                shoot(args.cub, args.data, args.out, "explorer-cub", cub, driver)
        finally:
            driver.quit()


if __name__ == "__main__":
    main()
