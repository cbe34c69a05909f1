"""Two faults a batch run must survive: SIGTERM (a scheduler's preemption, `scancel`) and a full disk.

SIGTERM: `genmodels run` and `genmodels run-all` on tiny notebooks that sleep; the signal is sent once the
sleeping cell runs, and the run folders must say "interrupted" with the signal, keep the partial notebook
and its report, and (run-all) not start the next notebook. Each of these tests takes 10-20 s on a 2-core CPU.

Full disk: checkpoint writes whose torch.save or file write fails as on a full disk (no disk is filled), and,
where the system lets an unprivileged user mount a 256 KiB tmpfs in a user namespace, a real full disk."""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
import torch

from genmodels.core import DiskFullError, load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SLEEP = "import time\ntime.sleep(seconds)  # the cell the signal interrupts"


def sleeping_notebook(folder, name="sleep.ipynb"):
    "A notebook with a parameters cell, a recorded metric, a cell that sleeps `seconds` (60) and a last cell."
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('preset = "quick"  # the run preset\nseconds = 60  # how long the cell sleeps')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("from genmodels.core import record_metrics\nrecord_metrics(before=1)"),
                nbformat.v4.new_code_cell(SLEEP), nbformat.v4.new_code_cell("record_metrics(after=1)")]
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def start(*args, cwd, sigint_ignored=False):
    "Start `python -m genmodels.cli ARGS` in the background (optionally with SIGINT ignored, as `cmd &` in a script)."
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.Popen([sys.executable, "-m", "genmodels.cli", *map(str, args)], cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ignore)


def wait_until_sleeping(process, executed, timeout=120):
    "Wait until papermill's saved copy of the notebook says the sleeping cell runs; the seconds it took."
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the command ended (exit {process.returncode}) before the cell slept:\n{out}\n{err[-3000:]}")
        try:
            cells = json.loads(Path(executed).read_text())["cells"]
            if any(c["source"] == SLEEP or "".join(c["source"]) == SLEEP
                   for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") == "running"):
                return time.perf_counter() - t0
        except (FileNotFoundError, json.JSONDecodeError, KeyError):  # not written yet, or written right now
            pass
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"the sleeping cell did not start within {timeout} s")


def kernel_pids(pid):
    "The child processes of a process (the kernel of a papermill run)."
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def stop(process, how, timeout=60):
    "Send the signal(s), wait for the end; the exit status, stdout, stderr and the seconds it took."
    if how == "command and kernel":  # what scancel does: every process of the job gets SIGTERM
        for pid in kernel_pids(process.pid):
            os.kill(pid, signal.SIGTERM)
    process.send_signal(signal.SIGINT if how == "SIGINT" else signal.SIGTERM)
    t0 = time.perf_counter()
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"the command did not end within {timeout} s of the signal:\n{out}\n{err[-3000:]}")
    return process.returncode, out, err, time.perf_counter() - t0


@pytest.mark.parametrize("how", ["command", "command and kernel"])
def test_run_sigterm(tmp_path, how):
    "SIGTERM to `genmodels run`: exit 143, manifest interrupted with the signal, partial notebook and report kept."
    nb = sleeping_notebook(tmp_path / "nbs")
    folder = tmp_path / "runs" / "sleep"
    process = start("run", nb, "--out", folder, cwd=tmp_path)
    started = wait_until_sleeping(process, folder / "sleep.ipynb")
    code, out, err, ended = stop(process, how)
    print(f"SIGTERM to {how}: the cell slept after {started:.1f} s, the command ended {ended:.1f} s after the signal")
    assert code == 143, out + err
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["status"], manifest["exit_status"], manifest["signal"]) == ("interrupted", 143, "SIGTERM")
    assert manifest["error"]["ename"] == "Terminated" and "terminated by SIGTERM" in manifest["error"]["evalue"]
    assert manifest["finished"] and manifest["wall_time_s"] < 50  # it stopped at the signal, not after the sleep
    partial = nbformat.read(folder / "sleep.ipynb", as_version=4)
    assert any(c.source == SLEEP for c in partial.cells)
    assert "the cell the signal interrupts" in (folder / "sleep.html").read_text()
    assert json.loads((folder / "metrics.json").read_text()) == {"before": 1}  # the last cell never ran
    assert "sleep.ipynb interrupted" in out and "Terminated: terminated by SIGTERM" in out
    assert "genmodels run: terminated by SIGTERM" in err
    assert ended < 30, "within Slurm's default KillWait"


@pytest.mark.parametrize("how, sigint_ignored", [("SIGTERM", False), ("SIGINT", False), ("SIGINT", True)],
                         ids=["SIGTERM", "SIGINT", "SIGINT, started with SIGINT ignored"])
def test_run_all_stops(tmp_path, how, sigint_ignored):
    """SIGTERM (or Ctrl-C) to `genmodels run-all` stops after the current notebook; summary.json says what was not started.
    Also when it was started with SIGINT ignored, as a background job of a batch script (`cmd &`) is."""
    nbs = tmp_path / "nbs"
    sleeping_notebook(nbs, "01_sleep.ipynb"); sleeping_notebook(nbs, "02_next.ipynb")
    parent = tmp_path / "runs" / "all"
    process = start("run-all", "--nbs", nbs, "--out", parent, cwd=tmp_path, sigint_ignored=sigint_ignored)
    started = wait_until_sleeping(process, parent / "01_sleep" / "01_sleep.ipynb")
    code, out, err, ended = stop(process, how)
    print(f"{how} to run-all: the first notebook slept after {started:.1f} s, the command ended {ended:.1f} s after")
    status = {"SIGTERM": 143, "SIGINT": 130}[how]
    assert code == status, out + err
    assert sorted(p.name for p in parent.iterdir()) == ["01_sleep", "summary.json"]  # 02_next has no run folder
    summary = json.loads((parent / "summary.json").read_text())
    assert (summary["status"], summary["signal"]) == ("interrupted", how)
    runs = [(Path(r["notebook"]).name, r["status"], r["exit_status"], r["signal"]) for r in summary["runs"]]
    assert runs == [("01_sleep.ipynb", "interrupted", status, how), ("02_next.ipynb", "not started", None, None)]
    manifest = json.loads((parent / "01_sleep" / "manifest.json").read_text())
    assert (manifest["status"], manifest["signal"]) == ("interrupted", how)
    assert (parent / "01_sleep" / "01_sleep.html").exists()
    assert "02_next   not started" in out  # the summary table is printed too


# -- a full disk --------------------------------------------------------------------------------------------------

def state(n):
    "A small checkpoint state of n float32 weights."
    return {"step": n, "weights": {"w": torch.arange(float(n))}}


class FillingFile:
    "A file object whose writes fail with ENOSPC once `room` bytes went through, as on a disk that fills up."

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def flush(self):
        return self.f.flush()


TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


@pytest.mark.parametrize("fault", ["OSError ENOSPC from the file's write", "torch's RuntimeError"])
def test_checkpoint_on_full_disk(tmp_path, monkeypatch, fault):
    "A checkpoint write that finds the disk full: a clear DiskFullError, the previous file intact, no temporary file."
    path = tmp_path / "run" / "checkpoint.pt"
    save_checkpoint(path, state(10), kind="demo")
    before = path.read_bytes()
    real_save = torch.save

    def failing_save(obj, f):
        if fault.startswith("OSError"):  # the real torch.save, into a file that runs out of space after 300 bytes
            return real_save(obj, FillingFile(f, room=300))
        f.write(b"PK\x03\x04" + bytes(200))  # torch's own failure, after a part of the file
        raise RuntimeError(TORCH_FULL_DISK)

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr(shutil, "disk_usage", lambda folder: SimpleNamespace(total=10**9, used=10**9 - 4096, free=4096))
    with pytest.raises(DiskFullError) as caught:
        save_checkpoint(path, state(100_000), kind="demo")
    message = str(caught.value)
    print(f"{fault}: {message}")
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(path)
    assert f"cannot write {path}: the disk is full (no space left on the device holding {path.parent})" in message
    assert "4.0 KiB free there, about 390.6 KiB to write" in message  # 100 000 float32 weights
    assert f"The previous {path} is unchanged and the partial temporary file was removed" in message
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["checkpoint.pt"]
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(path, kind="demo")["step"] == 10


def test_other_write_errors_unchanged(tmp_path, monkeypatch):
    "A write that fails for another reason (an I/O error) raises its own error, and still leaves no temporary file."
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, state(10), kind="demo")

    def broken_save(obj, f):
        f.write(b"PK")
        raise OSError(errno.EIO, os.strerror(errno.EIO))
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError) as caught:
        save_checkpoint(path, state(10), kind="demo")
    assert type(caught.value) is OSError and caught.value.errno == errno.EIO
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


REAL_DISK = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    from genmodels.core import DiskFullError, save_checkpoint
    path = Path(sys.argv[1]) / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weights": {"w": torch.zeros(1000)}}, kind="demo")  # 4 KB: fits
    before = path.read_bytes()
    try:
        save_checkpoint(path, {"step": 2, "weights": {"w": torch.zeros(1_000_000)}}, kind="demo")  # 4 MB: does not
        error = None
    except DiskFullError as e:
        error = {"message": str(e), "errno": e.errno, "cause": repr(e.__cause__)}
    print(json.dumps({"error": error, "unchanged": path.read_bytes() == before,
                      "files": sorted(p.name for p in path.parent.iterdir())}))
""")


def test_checkpoint_on_a_real_full_disk(tmp_path):
    "A real full disk: a 256 KiB tmpfs mounted in a user namespace (skipped where the system does not allow it)."
    mount = tmp_path / "small"
    mount.mkdir()
    unshare = shutil.which("unshare")
    if unshare is None or not sys.platform.startswith("linux"):
        pytest.skip("needs Linux's unshare")
    user_ns = [unshare, "--user", "--map-root-user", "--mount", "sh", "-c"]
    probe = subprocess.run(user_ns + [f"mount -t tmpfs -o size=256k tmpfs {mount}"], capture_output=True, text=True)
    if probe.returncode:
        pytest.skip(f"no tmpfs in a user namespace here: {probe.stderr.strip()}")
    script = tmp_path / "fill.py"
    script.write_text(REAL_DISK)
    done = subprocess.run(user_ns + [f'mount -t tmpfs -o size=256k tmpfs {mount} && "$0" "$1" "$2"',
                                     sys.executable, str(script), str(mount)],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print("a real full disk:", result)
    assert result["error"] is not None, "the 4 MB checkpoint should not fit a 256 KiB tmpfs"
    assert result["error"]["errno"] == errno.ENOSPC
    message = result["error"]["message"]
    assert f"cannot write {mount / 'checkpoint.pt'}: the disk is full (no space left on the device" in message
    assert "free there, about 3.8 MiB to write" in message
    assert result["unchanged"] and result["files"] == ["checkpoint.pt"]
