"""A course notebook runs top to bottom in real JupyterLab, in headless Chromium: no errors, widgets and figures render.

JupyterLab serves a copy of nbs/ and data/ in tmp_path, so the notebooks in the repository are never
touched (no autosave, no checkpoints); its config, data, runtime, settings and workspaces live in tmp_path
too. Chromium is Debian's (/usr/bin/chromium), driven by Playwright through `executable_path`: nothing
downloads a browser. The full-page screenshot goes to runs/browser/ (printed by the test).
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "nbs/03_pix2pix.ipynb"  # the notebook under test; until it exists, the tiler notebook stands in
FALLBACK = "nbs/01c_tiler.ipynb"
NOTEBOOKS = [p for p in [NOTEBOOK, FALLBACK] if (ROOT / p).exists()][:1]  # always exactly one
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")
SHOTS = ROOT / "runs" / "browser"

SERVER_START_S = 60  # JupyterLab answering /api/status
PAGE_READY_MS = 60_000  # the page loaded, the notebook open, its kernel idle
RUN_ALL_MS = 480_000  # every code cell executed (01c_tiler: ~15 s; 03_pix2pix trains three models: ~2-3 min)
WIDGET_MS = 20_000  # widget views rendered after the run

# JupyterLab user settings, written to a settings folder in tmp_path: all cells in the DOM (no windowing),
# no autosave, no requests for news or updates.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}

needs_chromium = pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK) and not IN_CI,
                                    reason=f"{CHROMIUM} not found (install Debian's `chromium`; in CI this test fails instead)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(proc, url: str, log: Path, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"JupyterLab did not answer {url.split('?')[0]} within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(proc):
    "Stop the server and everything it started (kernels run in sessions of their own), bounded."
    import psutil
    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    for p in [proc, *family]:
        try:
            p.send_signal(signal.SIGTERM)
        except (ProcessLookupError, psutil.Error):
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    _, alive = psutil.wait_procs([p for p in family if p.is_running()], timeout=5)
    for p in alive:
        p.kill()


@pytest.fixture
def jupyterlab(tmp_path):
    "JupyterLab on loopback serving a copy of nbs/ and data/; yields (base url, token, copy, log)."
    repo = tmp_path / "repo"
    for d in ("nbs", "data"):
        shutil.copytree(ROOT / d, repo / d, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    jdirs = {k: tmp_path / "jupyter" / k.lower() for k in (
        "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
        "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR")}
    for d in jdirs.values():
        d.mkdir(parents=True)
    for rel, value in LAB_SETTINGS.items():
        f = jdirs["JUPYTERLAB_SETTINGS_DIR"] / rel
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel draws inline, as for a student
    env.update({k: str(v) for k, v in jdirs.items()})
    port, token = _free_port(), secrets.token_hex(24)
    log = tmp_path / "jupyterlab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
           f"--ServerApp.root_dir={repo}", "--LabApp.expose_app_in_browser=True", "--ServerApp.terminals_enabled=False"]
    if os.geteuid() == 0:  # CI containers run as root
        cmd.append("--allow-root")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_server(proc, f"{base}/api/status?token={token}", log, SERVER_START_S)
        yield base, token, repo, log
    finally:
        _stop(proc)


# In the page: the open notebook panel, found through window.jupyterapp (exposed by --LabApp.expose_app_in_browser).
_PANEL_JS = """(path) => {
  const app = window.jupyterapp; if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) if (w.context && w.context.path === path && w.content) return w;
  return null; }"""

_READY_JS = f"""(path) => {{
  const w = ({_PANEL_JS})(path); if (!w || !w.context.isReady) return false;
  const s = w.sessionContext.session; return !!(s && s.kernel && s.kernel.status === 'idle'); }}"""

# Done when the kernel is idle and every code cell has an execution count, or at the first error output
# (run-all stops there, so the remaining counts would never come).
_PROGRESS_JS = f"""(path) => {{
  const w = ({_PANEL_JS})(path); if (!w) return null;
  const cells = w.content.model.cells; let code = 0, counted = 0, errors = [];
  for (let i = 0; i < cells.length; i++) {{
    const c = cells.get(i); if (c.type !== 'code') continue; code++;
    if (c.executionCount) counted++;
    for (const o of c.outputs.toJSON()) if (o.output_type === 'error') errors.push({{cell: i, ename: o.ename, evalue: o.evalue}});
  }}
  const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
  const status = kernel ? kernel.status : 'none';
  const done = errors.length > 0 || (status === 'idle' && counted === code && !w.content.node.querySelector('.jp-InputArea-prompt.jp-mod-busy'));
  return done ? {{code, counted, status, errors}} : null; }}"""


@pytest.fixture
def sync_playwright():
    "Playwright's entry point, once Chromium and Playwright are known to be there (in CI, their absence fails)."
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} not found: CI must install Debian's `chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            pytest.fail("playwright is not installed (it is in settings.ini's dev_requirements)")
        pytest.skip("playwright is not installed (pip install playwright; never `playwright install`)")
    return sync_playwright


@needs_chromium
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: Path(p).stem)
def test_notebook_runs_in_jupyterlab(notebook, sync_playwright, jupyterlab):
    "Run All in JupyterLab: every code cell runs without an error, widget views and figures render."
    base, token, repo, log = jupyterlab
    before = (ROOT / notebook).read_bytes()
    SHOTS.mkdir(parents=True, exist_ok=True)
    shot = SHOTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{Path(notebook).stem}.png"
    print(f"\nbrowser screenshot: {shot}")
    problems = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        page = None
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(30_000)
            console_errors = []
            page.on("pageerror", lambda e: console_errors.append(str(e)))
            page.goto(f"{base}/lab/tree/{notebook}?token={token}", wait_until="domcontentloaded")
            page.wait_for_function(_READY_JS, arg=notebook, timeout=PAGE_READY_MS)
            # Clear stored outputs and counts first, so "every cell has a count" means "ran now"; then run all.
            page.evaluate("""async () => {
              await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
              window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")
            result = page.wait_for_function(_PROGRESS_JS, arg=notebook, timeout=RUN_ALL_MS).json_value()
            assert not result["errors"], f"{notebook}: error outputs {result['errors']}\n(screenshot: {shot})"
            assert result["counted"] == result["code"] > 0, result

            out = ".jp-Notebook .jp-OutputArea-output"
            # errors as rendered: JupyterLab 4 renders an error output as application/vnd.jupyter.stderr text
            tracebacks = page.locator(f'{out}[data-mime-type="application/vnd.jupyter.stderr"]', has_text="Traceback")
            if tracebacks.count():
                problems.append(f"{tracebacks.count()} traceback(s) in outputs: {tracebacks.first.inner_text()[:1500]}")
            # every code cell is in the DOM (windowing off), each with its count in the prompt
            prompts = page.locator(".jp-Notebook .jp-CodeCell .jp-InputArea-prompt").all_inner_texts()
            unrun = [p for p in prompts if not p.strip().strip("[]:").isdigit()]
            if len(prompts) != result["code"] or unrun:
                problems.append(f"prompts: {len(prompts)} rendered for {result['code']} code cells, unrun: {unrun[:5]}")
            # ipywidgets views rendered and visible (JupyterLab gives a widget's output area no data-mime-type)
            views = page.locator(f"{out} .jupyter-widgets")
            views.first.wait_for(state="visible", timeout=WIDGET_MS)
            failed = page.locator(out, has_text="Error displaying widget")
            if failed.count():
                problems.append(f"a widget failed to render: {failed.first.inner_text()[:300]}")
            sized = page.evaluate(f"""() => [...document.querySelectorAll('{out} .jupyter-widgets[class*="widget-"]')]
                .filter(e => e.getBoundingClientRect().width > 0 && e.getBoundingClientRect().height > 0).length""")
            if sized < 1:
                problems.append("no visible .jupyter-widgets.widget-* element in the outputs")
            # figures: loaded <img> elements in output areas (matplotlib PNGs, the widget's image views)
            imgs = page.evaluate(f"""() => [...document.querySelectorAll('{out} img')]
                .map(i => ({{ok: i.complete && i.naturalWidth > 0, w: i.naturalWidth}}))""")
            if not any(i["ok"] for i in imgs) or not all(i["ok"] for i in imgs):
                problems.append(f"image outputs missing or not loaded: {imgs}")
            if console_errors:
                print("page errors (not failing the test):", *console_errors[:5], sep="\n  ")
            print(f"{notebook}: {result['code']} code cells run, {sized} widget views, {len(imgs)} images")
        finally:
            try:
                if page is not None:
                    _full_page_screenshot(page, shot)
            except Exception as e:  # the screenshot must never hide the real failure
                print(f"no screenshot: {e}")
            browser.close()
    assert not problems, "\n".join(problems) + f"\n(screenshot: {shot}; server log: {log})"
    assert (ROOT / notebook).read_bytes() == before, f"{notebook} changed on disk"


def _full_page_screenshot(page, path: Path):
    """The whole notebook as one PNG. JupyterLab scrolls inside its notebook panel (the page itself never
    scrolls, so Playwright's full_page shows one screen), and a notebook with outputs is taller than the
    16k pixels Chromium can capture at once: scroll the panel a screen at a time and stitch the pieces."""
    from PIL import Image
    page.set_viewport_size({"width": 1400, "height": 3000})
    page.evaluate("() => window.jupyterapp && window.jupyterapp.shell.collapseLeft()")
    page.wait_for_timeout(300)
    scroller = ".jp-NotebookPanel .jp-WindowedPanel-outer"
    box = page.locator(scroller).first.bounding_box(timeout=5_000)
    total = page.evaluate(f"() => document.querySelector('{scroller}').scrollHeight")
    x, y, w, h = (int(v) for v in (box["x"], box["y"], box["width"], box["height"]))
    canvas = Image.new("RGB", (1400, y + total), "white")
    pieces = path.parent / (path.stem + ".piece.png")
    try:
        page.evaluate(f"() => {{ document.querySelector('{scroller}').scrollTop = 0; }}")
        page.wait_for_timeout(200)
        page.screenshot(path=str(pieces), clip={"x": 0, "y": 0, "width": 1400, "height": y + h}, timeout=30_000)
        canvas.paste(Image.open(pieces).convert("RGB"), (0, 0))
        for top in range(h, total, h):
            actual = page.evaluate(f"() => {{ const s = document.querySelector('{scroller}'); s.scrollTop = {top}; return s.scrollTop; }}")
            page.wait_for_timeout(150)
            page.screenshot(path=str(pieces), clip={"x": x, "y": y, "width": w, "height": h}, timeout=30_000)
            canvas.paste(Image.open(pieces).convert("RGB"), (x, y + int(actual)))
    finally:
        pieces.unlink(missing_ok=True)
    canvas.save(path)
