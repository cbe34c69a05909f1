"""The course notebooks run headlessly through papermill, as `make demo` runs them, and leave readable reports."""
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
COURSE = sorted(NBS.glob("[0-9][0-9]*.ipynb"))


@pytest.mark.parametrize("nb", COURSE, ids=lambda p: p.stem)
def test_cell_tags_survive_cleaning(nb):
    "nbdev_clean keeps cell tags, so papermill finds the parameters cell of every notebook that has one."
    cells = nbformat.read(nb, as_version=4).cells
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{nb.name}: expected one cell tagged 'parameters', found {len(tagged)}"
    assert "preset = \"quick\"" in tagged[0].source
    kernel = nbformat.read(nb, as_version=4).metadata.get("kernelspec", {}).get("name")
    assert kernel == "python3", f"{nb.name}: expected the python3 kernelspec (JupyterLab and papermill read it), found {kernel!r}"


def test_papermill_run_and_html_report(tmp_path, monkeypatch):
    "01c_tiler through papermill in a real kernel, then the kit's HTML report, whose figures are embedded PNGs."
    import papermill as pm
    from genmodels.cli import export_html
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as in JupyterLab
    out = tmp_path / "01c_tiler.ipynb"
    pm.execute_notebook(str(NBS / "01c_tiler.ipynb"), str(out), parameters={"preset": "quick", "seed": 1},
                        kernel_name="python3", cwd=str(NBS), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "seed = 1" in injected[0].source
    views = [o for c in nb.cells for o in c.get("outputs", []) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert views and all("image/png" in o["data"] for o in views)  # the browser's live view and its PNG: one output
    html = export_html(out).read_text()  # the report `genmodels run` writes
    assert html.count('src="data:image/png;base64') >= 2  # the split and augmentation figure, the browser's static rendering
    assert "Traceback" not in html
