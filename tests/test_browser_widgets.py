"""The widgets in real JupyterLab, in headless Chromium, in a 1280 × 800 window, as a student uses them.

- `02b_monitor`: Run All, then press *stop training* while the notebook's own long fit runs: the fit ends
  early with the monitor's stop reason, the cells after it still run, and the monitor's widget stays, once,
  fitting the window.
- `01c_tiler` and `04a_slicer`: move one control of the TileBrowser (the page slider, by keyboard) and of
  the VolumeSlicer (the modality dropdown): the image changes; the widget is shown once (one output holds
  its view, and no static copy of it is rendered beside it); it fits the window, and its image is shown at
  its own pixel size. The slicer's opacity slider is disabled while the overlay is off.

The server, the browser and the copies of the notebooks come from `test_browser.py`'s fixtures.
"""
import time
from pathlib import Path

import pytest

from test_browser import (CHROMIUM, CHROMIUM_ARGS, PAGE_READY_MS, RUN_ALL_MS, SHOTS, _PANEL_JS, _PROGRESS_JS, _READY_JS,
                          jupyterlab, needs_chromium, sync_playwright)  # noqa: F401 (fixtures)

WINDOW = {"width": 1280, "height": 800}

# the index of the first code cell whose source holds `needle`, and the model ids of the widget views in
# each cell's outputs
_CELL_JS = f"""([path, needle]) => {{
  const w = ({_PANEL_JS})(path); if (!w) return null;
  const cells = w.content.model.cells;
  for (let i = 0; i < cells.length; i++) if (cells.get(i).sharedModel.getSource().includes(needle)) return i;
  return -1; }}"""
_VIEWS_JS = f"""(path) => {{
  const w = ({_PANEL_JS})(path); if (!w) return null;
  const cells = w.content.model.cells, views = [];
  for (let i = 0; i < cells.length; i++) {{
    const c = cells.get(i); if (c.type !== 'code') continue;
    for (const o of c.outputs.toJSON()) {{
      const v = o.data && o.data['application/vnd.jupyter.widget-view+json'];
      if (v) views.push({{cell: i, model_id: v.model_id}});
    }}
  }}
  return views; }}"""
_OUTPUT_TEXT_JS = f"""([path, index]) => {{
  const w = ({_PANEL_JS})(path); if (!w) return null;
  return w.content.model.cells.get(index).outputs.toJSON().map(o => o.text || '').join(''); }}"""


def _open(page, base, token, notebook, run_all=True):
    page.goto(f"{base}/lab/tree/{notebook}?token={token}", wait_until="domcontentloaded")
    page.wait_for_function(_READY_JS, arg=notebook, timeout=PAGE_READY_MS)
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    if run_all:
        page.evaluate("""async () => {
          await window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs');
          window.jupyterapp.commands.execute('notebook:run-all-cells'); }""")


def _finish(page, notebook):
    result = page.wait_for_function(_PROGRESS_JS, arg=notebook, timeout=RUN_ALL_MS).json_value()
    assert not result["errors"], f"{notebook}: error outputs {result['errors']}"
    assert result["counted"] == result["code"] > 0, result
    return result


def _cell(page, notebook, needle):
    index = page.evaluate(_CELL_JS, [notebook, needle])
    assert index is not None and index >= 0, f"{notebook}: no cell holds {needle!r}"
    return index, page.locator(".jp-Notebook .jp-Cell").nth(index)


def _shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}.png"
    try:
        page.screenshot(path=str(path))
        print(f"\nbrowser screenshot: {path}")
    except Exception as e:  # a screenshot must never hide the real failure
        print(f"no screenshot: {e}")


def _check_view(page, notebook, index, cell, label):
    "One view of the widget in this cell, no static copy beside it, fitting the window at its own pixel size."
    problems = []
    views = [v for v in page.evaluate(_VIEWS_JS, notebook) if v["cell"] == index]
    if len(views) != 1:
        problems.append(f"{label}: {len(views)} widget outputs in its cell, expected 1")
    else:
        shown = [v for v in page.evaluate(_VIEWS_JS, notebook) if v["model_id"] == views[0]["model_id"]]
        if len(shown) != 1:
            problems.append(f"{label}: its view is in {len(shown)} outputs, expected 1")
    rendered_png = cell.locator('.jp-OutputArea-output[data-mime-type="image/png"]').count()
    if rendered_png:
        problems.append(f"{label}: {rendered_png} static PNG output(s) rendered beside the live view")
    widget = cell.locator(".jp-OutputArea-output .jupyter-widgets.widget-vbox").first
    widget.scroll_into_view_if_needed()
    box = widget.bounding_box()
    panel = page.evaluate("""() => { const s = document.querySelector('.jp-NotebookPanel .jp-WindowedPanel-outer');
                                     return {width: s.clientWidth, height: s.clientHeight}; }""")
    if box["height"] > panel["height"] or box["width"] > panel["width"]:
        problems.append(f"{label}: {box['width']:.0f} × {box['height']:.0f} px, larger than the notebook's "
                        f"{panel['width']} × {panel['height']} px in a {WINDOW['width']} × {WINDOW['height']} window")
    images = widget.locator("img").evaluate_all(
        "els => els.map(i => ({natural: [i.naturalWidth, i.naturalHeight], shown: [i.clientWidth, i.clientHeight]}))")
    if len(images) != 1:
        problems.append(f"{label}: {len(images)} images in the widget, expected 1")
    for im in images:
        if im["natural"] != im["shown"] or im["natural"][0] == 0:
            problems.append(f"{label}: image of {im['natural']} px shown at {im['shown']} px")
    print(f"{label}: {box['width']:.0f} × {box['height']:.0f} px in a notebook of {panel['width']} × {panel['height']} px, "
          f"image {images[0]['natural'] if images else None}")
    return widget, problems


def _wait_for_new_image(page, widget, before, what):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = widget.locator("img").first.get_attribute("src")
        if now != before:
            return now
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: the image did not change within 30 s")


@pytest.fixture
def chromium(sync_playwright):  # noqa: F811
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport=WINDOW)
            page.set_default_timeout(30_000)
            yield page
        finally:
            browser.close()


@needs_chromium
def test_stop_during_the_notebooks_own_fit(chromium, jupyterlab):  # noqa: F811
    "Run All in 02b_monitor, press stop during the long fit: it ends early, with the monitor's reason."
    base, token, repo, log = jupyterlab
    notebook, page = "nbs/02b_monitor.ipynb", chromium
    try:
        _open(page, base, token, notebook)
        index, cell = _cell(page, notebook, "watcher = LossMonitor")
        button = cell.locator("button", has_text="stop training")
        button.wait_for(state="visible", timeout=RUN_ALL_MS)
        status = cell.locator(".widget-html-content", has_text="step")
        deadline = time.monotonic() + 60  # let it train a little, as a student would watch first
        while time.monotonic() < deadline and "step 1" not in (status.first.inner_text() if status.count() else ""):
            page.wait_for_timeout(100)
        assert button.is_enabled(), "the stop button is disabled while the fit runs"
        button.click()
        # the button answers at once (or the run has already ended and it says so)
        answer = cell.locator("button", has_text="stopping after step").or_(cell.locator("button", has_text="training ended"))
        answer.first.wait_for(state="visible", timeout=10_000)
        _finish(page, notebook)  # the cells after the fit ran too
        text = page.evaluate(_OUTPUT_TEXT_JS, [notebook, index])
        assert "stopped from the monitor at step" in text, text
        stopped, total = (int(s) for s in text.split("at step ", 1)[1].split()[0:3:2])
        assert stopped < total == 2000, text
        assert f"stopped from the monitor at step {stopped} of {total}" in cell.locator(".widget-html-content").last.inner_text()
        print(f"02b_monitor: {text.strip()}")
        _, problems = _check_view(page, notebook, index, cell, "LossMonitor")  # its widget stays, once, and fits
        assert not problems, "\n".join(problems)
    finally:
        _shot(page, "02b_monitor-stop")


@needs_chromium
@pytest.mark.parametrize("notebook, needle, label", [
    ("nbs/01c_tiler.ipynb", "browser.show()", "TileBrowser"),
    ("nbs/04a_slicer.ipynb", "slicer.show()", "VolumeSlicer"),
], ids=["TileBrowser", "VolumeSlicer"])
def test_a_control_redraws_one_view_that_fits(notebook, needle, label, chromium, jupyterlab):  # noqa: F811
    "Move one control: the image changes; the widget is shown once, fits 1280 × 800, at its own pixel size."
    base, token, repo, log = jupyterlab
    page = chromium
    try:
        _open(page, base, token, notebook)
        _finish(page, notebook)
        index, cell = _cell(page, notebook, needle)
        widget, problems = _check_view(page, notebook, index, cell, label)
        before = widget.locator("img").first.get_attribute("src")
        if label == "TileBrowser":  # the page slider, by keyboard, as a student would
            slider = widget.locator(".widget-slider", has=page.locator("label", has_text="page"))
            start = int(slider.locator(".widget-readout").first.inner_text())
            slider.locator(".noUi-handle").first.focus()
            page.keyboard.press("ArrowRight")
            _wait_for_new_image(page, widget, before, "page slider")
            readout = slider.locator(".widget-readout").first.inner_text().strip()
            assert readout == str(start + 1), f"the page slider reads {readout!r} after one step from {start}"
        else:  # the modality dropdown
            widget.locator("select").first.select_option("t1n")  # the cell left it at t2f
            _wait_for_new_image(page, widget, before, "modality dropdown")
            overlay = widget.locator(".widget-checkbox", has_text="segmentation").locator("input")
            opacity = widget.locator(".widget-slider", has=page.locator("label", has_text="opacity"))
            assert opacity.locator(".noUi-target[disabled]").count() == 0, "opacity disabled with the overlay on"
            overlay.uncheck()
            opacity.locator(".noUi-target[disabled]").first.wait_for(state="attached", timeout=10_000)
        _, after = _check_view(page, notebook, index, cell, label)
        problems += after
        assert not problems, "\n".join(problems) + f"\n(server log: {log})"
    finally:
        _shot(page, f"{Path(notebook).stem}-{label}")
