"""A click on the monitor's stop button during the cell's own fit, sent to a real kernel as the browser sends it.

No browser: a Jupyter client starts an IPython kernel, runs a cell whose `fit` would take minutes and queues
the next cell behind it (as JupyterLab's Run All does), then sends the button's click as a `comm_msg` on the
shell channel. The fit must end early with the monitor's stop reason, the button must have said at once
after which step, and the queued cell must run afterwards, once, in its turn.
"""
import os
import time

import pytest

CELL = '''
import time
from genmodels.core import fit
from genmodels.monitor import LossMonitor
def step(state, batch):
    time.sleep(0.002)  # a small model's step
    return {"loss_G": 0.7, "loss_D": 1.3, "D_real": 0.5, "D_fake": 0.5}
def data():
    while True:
        yield {}
monitor = LossMonitor(every=200)
print("BUTTON", monitor.stop_button.comm.comm_id, flush=True)
run = fit(step, {}, data(), 100_000, [monitor], progress=False)
print("RESULT", run.step, "|", run.stop_reason, flush=True)
'''
NEXT_CELL = 'print("NEXT", run.step, flush=True)'


def _collect(kc, until, timeout):
    "iopub messages until `until(messages)` is true."
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            messages.append(kc.get_iopub_msg(timeout=1))
        except Exception:  # queue.Empty
            continue
        if until(messages):
            return messages
    raise AssertionError(f"timed out after {timeout} s; streams: {_streams(messages)[-2000:]}")


def _streams(messages):
    return "".join(m["content"].get("text", "") for m in messages if m["msg_type"] == "stream")


def test_stop_click_during_the_cells_own_fit(tmp_path):
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path),
                              env={**os.environ, "MPLBACKEND": "Agg", "PYTHONUNBUFFERED": "1"})
    try:
        first = kc.execute(CELL)
        second = kc.execute(NEXT_CELL)  # waits behind the running cell, as under Run All
        messages = _collect(kc, lambda ms: "BUTTON" in _streams(ms), 120)
        comm_id = _streams(messages).split("BUTTON", 1)[1].split()[0]
        # the fit is running once the monitor's status line reports a step
        messages += _collect(kc, lambda ms: any(m["msg_type"] == "comm_msg" and "step 5" in str(m["content"]["data"])
                                                for m in ms), 120)
        click = kc.session.msg("comm_msg", {"comm_id": comm_id,
                                            "data": {"method": "custom", "content": {"event": "click"}}})
        kc.shell_channel.send(click)
        messages += _collect(kc, lambda ms: "NEXT" in _streams(ms), 120)
        text = _streams(messages)
        result = text.split("RESULT", 1)[1].split("\n")[0]
        stopped_at = int(result.split("|")[0])
        assert stopped_at < 100_000, text[-1000:]
        assert result.split("|")[1].strip() == f"stopped from the monitor at step {stopped_at} of 100000"
        # the button answered at once, naming the step after which the run stops
        answers = [m["content"]["data"] for m in messages if m["msg_type"] == "comm_msg"
                   and m["content"].get("comm_id") == comm_id]
        assert any(f"stopping after step {stopped_at}" in str(a) for a in answers), answers[-3:]
        # the queued cell ran after the fit, once, in its turn
        assert text.index("RESULT") < text.index("NEXT") and text.count("NEXT") == 1
        assert text.split("NEXT", 1)[1].split()[0] == str(stopped_at)
        for msg_id in (first, second):
            reply = kc.get_shell_msg(timeout=30)
            assert reply["parent_header"]["msg_id"] in (first, second) and reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


FIT = '''
import time
from genmodels.core import fit
from genmodels.monitor import LossMonitor
def step(state, batch):
    time.sleep(0.002)
    return {"loss_G": 0.7, "loss_D": 1.3}
def data():
    while True:
        yield {}
run = fit(step, {}, data(), 300, [LossMonitor(every=100)], progress=False)
'''


def test_queued_cells_run_in_their_order():
    "Run All sends every cell at once: cells held during one fit, and those the kernel had already read, keep their order."
    from jupyter_client.manager import start_new_kernel
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "MPLBACKEND": "Agg"})
    cells = [FIT, "x = 1", FIT, "y = x + 1", "z = y + 1", FIT, "print('LAST', x, y, z, flush=True)"]
    try:
        ids = [kc.execute(c) for c in cells]
        messages = _collect(kc, lambda ms: "LAST" in _streams(ms) or any(m["msg_type"] == "error" for m in ms), 180)
        errors = [m["content"]["evalue"] for m in messages if m["msg_type"] == "error"]
        assert not errors, errors
        order = [ids.index(m["parent_header"]["msg_id"]) for m in messages if m["msg_type"] == "execute_input"]
        assert order == list(range(len(cells))), order
        assert "LAST 1 2 3" in _streams(messages)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
