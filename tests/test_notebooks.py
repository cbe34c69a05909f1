"""The course notebooks run headlessly through papermill, as `make demo` runs them, and leave readable reports."""
import json
import subprocess
import sys
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
    "01_fom through papermill in a real kernel, then an HTML report whose figures are embedded PNGs."
    import papermill as pm
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel draws inline, as in JupyterLab
    out = tmp_path / "01_fom.ipynb"
    pm.execute_notebook(str(NBS / "01_fom.ipynb"), str(out), parameters={"preset": "quick", "seed": 1},
                        kernel_name="python3", cwd=str(NBS), progress_bar=False)
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "seed = 1" in injected[0].source
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--log-level", "WARN", str(out)], check=True)
    html = (tmp_path / "01_fom.html").read_text()
    assert html.count("data:image/png;base64") >= 3  # section figure, tiler views, the browser's static snapshot
    assert "Traceback" not in html
