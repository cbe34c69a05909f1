"""`genmodels run` and `genmodels run-all`: refusals, failing cells, complete run folders, and equal metrics for equal seeds.

Most tests use tiny notebooks written here with nbformat, so the file runs in about a minute and a half on a
2-core CPU; the reproducibility test runs the real 01c_tiler twice (about 20 s each)."""
import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from genmodels.cli import main, run_notebook

ROOT = Path(__file__).resolve().parents[1]
NBS = ROOT / "nbs"
CONSOLE_SCRIPT = Path(sys.executable).parent / "genmodels"


def tiny_notebook(folder, name="tiny.ipynb", extra=None):
    "A small notebook: parameters preset and n, a recorded metric, a figure, and optionally a last cell."
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('preset = "quick"  # the run preset\nn = 3  # a number to square')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell("from genmodels.core import record_metrics\nrecord_metrics(n_squared=n * n, preset=preset)"),
                nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nplt.plot([0, n], [0, n * n]); plt.show()")]
    if extra:
        nb.cells.append(nbformat.v4.new_code_cell(extra))
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


FAILING = 'total = n + 1\nraise ValueError(f"n: expected at most 2, found {n}")'


def genmodels(*args, cwd, console_script=True):
    "Run the `genmodels` command (or `python -m genmodels.cli`) in a subprocess."
    command = [str(CONSOLE_SCRIPT)] if console_script and CONSOLE_SCRIPT.exists() else [sys.executable, "-m", "genmodels.cli"]
    return subprocess.run(command + [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600)


def test_unknown_parameter_refused(tmp_path):
    "A misspelt -p is refused with the notebook's parameters listed; exit 2 and no run folder."
    nb = tiny_notebook(tmp_path / "nbs")
    done = genmodels("run", nb, "-p", "sed", "1", "-p", "n", "4", cwd=tmp_path, console_script=False)
    assert done.returncode == 2, done.stderr
    assert "-p sed: unknown parameter" in done.stderr
    assert "preset = 'quick'  # the run preset" in done.stderr and "n = 3  # a number to square" in done.stderr
    assert not (tmp_path / "runs").exists()
    done = genmodels("run", nb, "--device", "cpu", cwd=tmp_path, console_script=False)
    assert done.returncode == 2 and "--device cpu: the notebook has no 'device' parameter" in done.stderr
    assert not (tmp_path / "runs").exists()


def test_failing_cell(tmp_path):
    "A raising cell: exit 1, the cell and the error printed, partial notebook and HTML kept, manifest says failed."
    nb = tiny_notebook(tmp_path / "nbs", "bad.ipynb", extra=FAILING)
    done = genmodels("run", nb, "--out", "runs/bad", cwd=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "| raise ValueError(" in done.stdout and "ValueError: n: expected at most 2, found 3" in done.stdout
    folder = tmp_path / "runs" / "bad"
    partial = nbformat.read(folder / "bad.ipynb", as_version=4)
    outputs = [o for c in partial.cells if c.cell_type == "code" for o in c.outputs]
    assert any(o.get("output_type") == "error" and o.get("ename") == "ValueError" for o in outputs)
    assert (folder / "bad.html").exists()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_status"], manifest["error"]["ename"]) == ("failed", 1, "ValueError")
    assert "raise ValueError" in manifest["error"]["source"]
    assert json.loads((folder / "metrics.json").read_text()) == {"n_squared": 9, "preset": "quick"}  # recorded before the failure


def test_successful_run(tmp_path, monkeypatch, capsys):
    "The default run folder holds the executed notebook, HTML with an embedded PNG, metrics, params and a full manifest."
    nb = tiny_notebook(tmp_path / "nbs")
    monkeypatch.chdir(tmp_path)  # conftest's MPLBACKEND=Agg stays set: the command must still get inline figures
    assert main(["run", str(nb), "--preset", "full", "-p", "n", "4"]) == 0
    (folder,) = (tmp_path / "runs").iterdir()
    assert folder.name.endswith("-tiny")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "metrics.json", "params.json", "tiny.html", "tiny.ipynb"]
    assert "data:image/png;base64" in (folder / "tiny.html").read_text()
    assert json.loads((folder / "metrics.json").read_text()) == {"n_squared": 16, "preset": "full"}
    assert json.loads((folder / "params.json").read_text()) == {"preset": "full", "n": 4}
    manifest = json.loads((folder / "manifest.json").read_text())
    expected = {"notebook", "run_folder", "status", "exit_status", "command", "cwd", "started", "finished", "wall_time_s",
                "seed", "preset", "overrides", "device", "device_name", "git", "versions", "error", "files", "environment"}
    assert expected <= set(manifest), expected - set(manifest)
    assert (manifest["status"], manifest["exit_status"], manifest["preset"], manifest["error"]) == ("ok", 0, "full", None)
    assert manifest["command"] == f"genmodels run {nb} --preset full -p n 4"
    assert {"python", "torch", "numpy", "genmodels"} <= {k for k, v in manifest["versions"].items() if v}
    assert manifest["wall_time_s"] > 0 and manifest["device_name"]
    assert "ok in" in capsys.readouterr().out


def test_out_refused(tmp_path, monkeypatch, capsys):
    "A run folder inside the notebooks folder, a data folder or a non-empty folder is refused, before anything runs."
    nb = tiny_notebook(tmp_path / "nbs")
    (tmp_path / "data").mkdir()
    (tmp_path / "full").mkdir(); (tmp_path / "full" / "x.txt").write_text("x")
    for out, message in [(tmp_path / "nbs" / "runs", "inside the notebooks folder"), (tmp_path / "data" / "run", "inside the data folder"),
                         (tmp_path / "full", "expected a new or empty folder")]:
        assert main(["run", str(nb), "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "nbs" / "runs").exists() and not (tmp_path / "data" / "run").exists()
    monkeypatch.chdir(tmp_path / "nbs")  # the default runs/ would land in the notebooks folder
    assert main(["run", "tiny.ipynb"]) == 2
    assert "the default run folder" in capsys.readouterr().err and not (tmp_path / "nbs" / "runs").exists()


def test_run_all(tmp_path, monkeypatch, capsys):
    "run-all: every NN*.ipynb in order into one parent folder, a summary table, exit 1 when one fails; unknown -p refused."
    nbs = tmp_path / "nbs"
    tiny_notebook(nbs, "01_good.ipynb"); tiny_notebook(nbs, "02_bad.ipynb", extra=FAILING); tiny_notebook(nbs, "scratch.ipynb")
    monkeypatch.chdir(tmp_path)
    assert main(["run-all", "--nbs", "nbs", "-p", "nope", "1"]) == 2
    assert "nope: no course notebook in nbs declares such a parameter" in capsys.readouterr().err
    assert main(["run-all", "--nbs", "nbs", "--device", "cpu"]) == 2  # no notebook has a device parameter
    assert not (tmp_path / "runs").exists()
    assert main(["run-all", "--nbs", "nbs", "--preset", "full", "--out", "runs/all"]) == 1
    out = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "runs" / "all").iterdir()) == ["01_good", "02_bad", "summary.json"]
    table = out[out.index("notebook  status"):]
    assert re.search(r"^01_good +ok +[0-9.]+ s +n_squared=9, preset=full$", table, re.M), table
    assert re.search(r"^02_bad +failed +[0-9.]+ s +cell \[\d+\]: ValueError: n: expected at most 2, found 3$", table, re.M), table
    summary = json.loads((tmp_path / "runs" / "all" / "summary.json").read_text())
    assert [(Path(r["notebook"]).name, r["status"]) for r in summary["runs"]] == [("01_good.ipynb", "ok"), ("02_bad.ipynb", "failed")]


def test_same_seed_same_metrics(tmp_path):
    "The same course notebook, preset and seed on the CPU gives the same metrics.json twice."
    runs = [run_notebook(NBS / "01c_tiler.ipynb", {"seed": 1}, preset="quick", out=tmp_path / name, verbose=False) for name in "ab"]
    assert [r["status"] for r in runs] == ["ok", "ok"], [r["error"] for r in runs]
    first, second = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in "ab")
    assert len(first) >= 3 and first == second
    assert runs[0]["seed"] == runs[1]["seed"] == 1


KINDS = ("import numpy as np, torch\n"
         "record_metrics(flagged=np.bool_(n > 5), copied=torch.tensor(True), count=np.int64(n), share=np.float32(0.25))")


def test_metrics_keep_their_json_kinds(tmp_path):
    "numpy and torch scalars recorded in a kernel reach metrics.json as JSON booleans, ints and floats (not strings)."
    nb = tiny_notebook(tmp_path / "nbs", "kinds.ipynb", extra=KINDS)
    result = run_notebook(nb, {}, out=tmp_path / "runs" / "kinds", verbose=False)
    assert result["status"] == "ok", result["error"]
    text = (tmp_path / "runs" / "kinds" / "metrics.json").read_text()
    assert '"flagged": false' in text and '"copied": true' in text, text
    metrics = json.loads(text)
    assert metrics == {"n_squared": 9, "preset": "quick", "flagged": False, "copied": True, "count": 3, "share": 0.25}
    assert [type(metrics[k]) for k in ("flagged", "copied", "count", "share")] == [bool, bool, int, float]
