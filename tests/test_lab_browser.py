"""JupyterLab as a student meets it, in a real browser (Debian's chromium driven by Playwright):
open the quickstart, run all cells, use the panel (choose a song, move a weight slider, press
Run), and check that every figure, the before/after images and the labelled audio players are in
the page. Screenshots go to runs/browser-test/ (or $EMOSTYLE_SCREENSHOTS) to be looked at.

The quickstart runs with small parameters (a few guidance steps, four candidates) so that the
test takes a minute or two on two cores; everything else is the committed notebook.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from emostyle.reproduce import KERNEL_ENV, notebook_dir, register_kernel

pytest.importorskip("playwright.sync_api")
pytest.importorskip("jupyterlab")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed")]

SMALL = {"guidance.steps": 6, "retrieval.candidates": 4}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def shots(repo_root) -> Path:
    folder = Path(os.environ.get("EMOSTYLE_SCREENSHOTS", repo_root / "runs" / "browser-test"))
    folder = folder / time.strftime("%Y%m%d-%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a copy of the quickstart whose parameters cell asks for a small run;
    the kit's kernel is registered for it alone. Yields (url, token, notebooks folder)."""
    root = tmp_path_factory.mktemp("lab")
    books = root / "notebooks"
    books.mkdir()
    nb = nbformat.read(notebook_dir() / "00_quickstart.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assert "overrides = {}" in params.source
    params.source = params.source.replace("overrides = {}", f"overrides = {SMALL!r}")
    nbformat.write(nb, books / "00_quickstart.ipynb")
    register_kernel(root / "jupyter")
    news = root / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text('{"fetchNews": "false"}')  # no pop-up asking to fetch news from the internet
    port, token = _free_port(), "emostyle-browser-test"
    env = os.environ | KERNEL_ENV | {
        "JUPYTER_PATH": str(root / "jupyter"), "JUPYTER_CONFIG_DIR": str(root / "config"),
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"), "JUPYTERLAB_SETTINGS_DIR": str(root / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(root / "workspaces")}
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={books}", "--allow-root",
         "--LabApp.news_url=None", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail(f"JupyterLab did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
    yield url, token, books
    server.terminate()
    try:
        server.wait(20)
    except subprocess.TimeoutExpired:
        server.kill()


@pytest.fixture(scope="module")
def page(lab, shots):
    from playwright.sync_api import sync_playwright

    url, token, _ = lab
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(f"{url}/lab/tree/00_quickstart.ipynb?token={token}&reset")
        page.wait_for_selector(".jp-NotebookPanel .jp-Cell", timeout=120_000)
        _wait_idle(page, 120)
        page.screenshot(path=shots / "1-opened.png")
        yield page
        browser.close()


def _wait_idle(page, seconds):
    """Until the status bar says the kit's kernel is idle."""
    page.wait_for_function("() => document.body.innerText.includes('EmoStyle kit | Idle')", timeout=seconds * 1000)


def _run_all(page):
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def _prompts(page) -> list[str]:
    return page.eval_on_selector_all(".jp-CodeCell .jp-InputArea-prompt", "els => els.map(e => e.textContent)")


def test_opening_the_notebook_does_not_mark_it_modified(page):
    time.sleep(2)
    assert page.locator(".lm-TabBar-tab.jp-mod-dirty").count() == 0
    assert "EmoStyle kit" in page.locator(".jp-NotebookPanel .jp-Toolbar-kernelName").first.inner_text()


@pytest.fixture(scope="module")
def ran_all(page, shots):
    """The quickstart after Run All Cells, every cell finished without an error."""
    _run_all(page)
    begun = time.time()
    while True:  # every code cell done: a number in its prompt, none busy ("*")
        prompts = _prompts(page)
        if prompts and all(p.strip("[]: ").isdigit() for p in prompts):
            break
        if page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']").count():
            page.screenshot(path=shots / "error.png", full_page=True)
            pytest.fail("a cell raised: " + page.locator(".jp-RenderedText[data-mime-type="
                        "'application/vnd.jupyter.error']").first.inner_text()[-1500:])
        assert time.time() - begun < 600, f"cells still running after 10 min: {prompts}"
        time.sleep(2)
    _wait_idle(page, 60)
    page.screenshot(path=shots / "2-run-all.png", full_page=True)
    return page


def test_run_all_shows_every_figure_and_labelled_players(ran_all, shots):
    page = ran_all
    images = page.locator(".jp-OutputArea-output img")
    # Figure 1, the before/after figure, the loss curves; the panel's come later.
    assert images.count() >= 3
    sizes = images.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight])")
    assert all(w > 200 and h > 150 for w, h in sizes), sizes
    assert page.locator(".jp-OutputArea-output audio").count() >= 2
    text = page.locator(".jp-NotebookPanel").inner_text()
    for label in ("song", "composed music", "lyrics", "polarity", "valence"):  # (titles inside figures are pixels)
        assert label in text, label
    # The page as the student sees it at each figure.
    for k in range(images.count()):
        images.nth(k).scroll_into_view_if_needed()
        images.nth(k).evaluate("img => img.decode()")
        page.screenshot(path=shots / f"2-figure-{k + 1}.png")


def test_the_panel_runs_with_a_chosen_song_and_weight(ran_all, shots, lab):
    page, books = ran_all, lab[2]
    panel = page.locator(".jp-OutputArea-output .widget-vbox").first
    panel.scroll_into_view_if_needed()
    song = panel.locator(".widget-dropdown select").first
    options = [o.replace("\xa0", " ") for o in song.locator("option").all_inner_texts()]  # widgets keep spaces
    assert len(options) >= 2 and all("kit song" in o for o in options)
    song.select_option(index=len(options) - 1)
    readouts = panel.locator(".widget-slider .widget-readout")  # l_Aud, l_Mus, l_Tex, steps
    for index, value, shown in ((1, "0.8", "0.80"), (3, "5", "5")):  # type into the slider's readout
        readout = readouts.nth(index)
        readout.fill(value)
        readout.press("Enter")
        page.wait_for_function("([el, v]) => el.textContent.trim() === v", arg=[readout.element_handle(), shown],
                               timeout=10_000)
    status = panel.locator(".widget-html").first
    panel.locator("button", has_text="Run").click()
    page.wait_for_function("el => /running|done|error/.test(el.textContent)", arg=status.element_handle(),
                           timeout=30_000)
    page.screenshot(path=shots / "3-panel-running.png")
    page.wait_for_function("el => /done|error/.test(el.textContent)", arg=status.element_handle(), timeout=300_000)
    assert "done" in status.inner_text(), status.inner_text()
    result = panel.locator(".widget-output")
    images = result.locator("img")
    assert images.count() >= 2  # before/after figure and loss curves
    for k in range(images.count()):
        images.nth(k).scroll_into_view_if_needed()
        handle = images.nth(k).element_handle()
        page.wait_for_function("img => img.complete && img.naturalWidth > 200", arg=handle)
        handle.evaluate("img => img.decode()")  # painted whole, not the first rows only
        page.screenshot(path=shots / f"4-panel-result-{k + 1}.png")
        images.nth(k).screenshot(path=shots / f"4-panel-image-{k + 1}.png")
    assert result.locator("audio").count() == 2
    chosen = options[-1].split(" ")[0]
    assert chosen in result.inner_text()  # the player's label names the song
    # The run used what the form said.
    manifest = json.loads((books.parent / "runs" / "lab" / "00_quickstart" / "panel" / "run-1" / "manifest.json").read_text())
    assert Path(manifest["song"]).stem == chosen
    assert manifest["config"]["guidance"]["l_mus"] == 0.8 and manifest["config"]["guidance"]["steps"] == 5
