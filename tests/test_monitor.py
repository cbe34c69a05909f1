"""The loss monitor outside a notebook: every diagnosis, the stop button under fit, the files it leaves, odd logs."""
import math

import numpy as np
import pytest

from genmodels.core import Callback, fit
from genmodels.monitor import (LEVELS, STOP_REASON, SYNTHETIC_CASES, LossMonitor, diagnose, figure, in_background,
                               log_values, smooth, summary, synthetic_history)
from genmodels.viz import figure_png

EXPECTED = {"balanced": ("ok", "balanced"), "discriminator_wins": ("problem", "discriminator too strong"),
            "discriminator_at_chance": ("warning", "discriminator is at chance"),
            "generator_fools": ("warning", "generator fools the discriminator"),
            "mode_collapse": ("problem", "collapse onto few modes"), "black_tiles": ("problem", "collapse onto black tiles"),
            "diverging": ("problem", "losses diverging"), "oscillating": ("warning", "losses oscillate")}


@pytest.mark.parametrize("case", SYNTHETIC_CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_diagnose_each_case(case, seed):
    level, message = diagnose(synthetic_history(case, seed=seed))
    assert level == EXPECTED[case][0], message
    assert EXPECTED[case][1] in message


def test_diagnose_warming_up_and_thresholds():
    assert diagnose([]) == ("ok", "warming up: 0 of 50 steps, too few to judge the balance yet")
    assert diagnose(synthetic_history("discriminator_wins", 49))[1].startswith("warming up")
    # a stricter threshold turns a balanced run into a strong discriminator, a looser one the reverse
    assert "discriminator too strong" in diagnose(synthetic_history("balanced"), strong_accuracy=0.6)[1]
    assert diagnose(synthetic_history("mode_collapse"), min_diversity=0.05)[0] == "ok"
    with pytest.raises(TypeError):
        diagnose(synthetic_history("balanced"), no_such_threshold=1)
    with pytest.raises(ValueError, match="window: expected"):
        diagnose([], window=0)


def test_diagnose_collapse_without_real_background():
    history = [{k: v for k, v in logs.items() if k != "background_share_real"} for logs in synthetic_history("black_tiles")]
    level, message = diagnose(history)
    assert level == "problem" and "against 5% of real ones" in message  # background_reference


def test_missing_keys_one_step_and_nan():
    only_losses = [{"step": i + 1, "loss_G": 1.0 + 0.1 * math.sin(i), "loss_D": 0.9 + 0.1 * math.cos(i)} for i in range(120)]
    assert diagnose(only_losses)[0] == "ok"
    odd = [{"step": 1, "loss_G": float("nan"), "loss_D": float("inf"), "D_acc": None, "comment": "hello", "lr": [1, 2]}]
    for history in ([], odd, [{"step": 1, "loss_G": 1.0, "loss_D": 1.2}], [{}]):
        level, message = diagnose(history, min_steps=1)
        assert level in LEVELS and "nan" not in message.lower()
        assert figure_png(figure(history))[:4] == b"\x89PNG"
        text = summary(history)
        assert "nan" not in text.lower() and "steps per level" in text
    assert np.isnan(log_values(odd, "loss_D")).all()
    # smoothing carries on through gaps and is NaN only before the first value
    smoothed = smooth([np.nan, 1.0, np.nan, 3.0], "ema", 3)
    assert np.isnan(smoothed[0]) and np.isfinite(smoothed[1:]).all()
    assert np.isfinite(smooth([np.nan, 1.0, np.nan, np.nan, np.nan, 3.0], "mean", 2)[1:]).all()


def _replay(history):
    "A step function that replays made-up logs, one per step."
    def step(state, batch):
        return {k: v for k, v in history[state["i"].__next__()].items() if k not in ("step", "step_time")}
    return step, {"i": iter(range(len(history)))}


def _data():
    while True:
        yield {}


class _ClickAt(Callback):
    order = 60

    def __init__(self, button, at):
        self.button, self.at = button, at

    def on_step(self, run, logs):
        if run.step == self.at:
            self.button.click()


def test_stop_button_stops_fit(tmp_path):
    monitor = LossMonitor(show=False)
    step, state = _replay(synthetic_history("balanced", 200))
    run = fit(step, state, _data(), 200, [_ClickAt(monitor.stop_button, 12), monitor], run_dir=tmp_path, progress=False)
    assert (run.step, run.stop, run.stop_reason) == (13, True, f"{STOP_REASON} at step 13 of 200")
    assert "stopped: stopped from the monitor at step 13 of 200" in (tmp_path / "monitor.txt").read_text()
    assert monitor.stop_button.description == "training ended" and "at step 13 of 200" in monitor.status.value
    # a click before the run has started does not stop the next run: on_start clears it
    monitor.stop_button.disabled = False
    monitor.stop_button.click()
    step, state = _replay(synthetic_history("balanced", 20))
    assert fit(step, state, _data(), 20, [monitor], progress=False).step == 20


def test_stop_button_from_another_thread():
    monitor = LossMonitor(show=False)
    step, state = _replay(synthetic_history("balanced", 100_000, seed=3))
    thread = in_background(fit, step, state, _data(), 100_000, [monitor], progress=False)
    while not monitor.levels:
        thread.join(0.01)
    monitor.stop_button.click()
    thread.join(60)
    assert not thread.is_alive() and thread.error is None
    run = thread.result
    assert run.step < 100_000 and run.stop_reason == f"{STOP_REASON} at step {run.step} of 100000"


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # re-raised on purpose: JupyterLab shows it
def test_in_background_keeps_the_error():
    def fails():
        raise ValueError("broken on purpose")
    thread = in_background(fails)
    thread.join(10)
    assert isinstance(thread.error, ValueError) and thread.result is None


def test_on_end_writes_png_and_summary(tmp_path):
    monitor = LossMonitor(every=7, show=False)
    step, state = _replay(synthetic_history("discriminator_wins", 150))
    run = fit(step, state, _data(), 150, [monitor], run_dir=tmp_path, progress=False)
    assert run.step == 150
    png = (tmp_path / "monitor.png").read_bytes()
    assert png[:4] == b"\x89PNG" and png == monitor.image.value
    text = (tmp_path / "monitor.txt").read_text()
    assert "steps: 150 (step 1 to 150)" in text and "diagnosis: problem" in text and "discriminator too strong" in text
    counts = dict(part.rsplit(" ", 1) for part in text.split("steps per level: ")[1].strip().split(", "))
    assert sum(int(v) for v in counts.values()) == 150 and int(counts["problem"]) > 0
    assert monitor.n_draws == 150 // 7 + 1  # every 7 steps and at the end, not every step
    assert monitor.stop_button.disabled


def test_one_step_run_and_no_run_dir(tmp_path):
    monitor = LossMonitor(show=False)
    step, state = _replay([{"loss_G": 0.7, "loss_D": 1.4}])
    run = fit(step, state, _data(), 1, [monitor], run_dir=tmp_path, progress=False)
    assert run.step == 1 and (tmp_path / "monitor.png").exists()
    assert "warming up" in (tmp_path / "monitor.txt").read_text()
    step, state = _replay([{"loss_G": 0.7, "loss_D": 1.4}])
    fit(step, state, _data(), 1, [LossMonitor(show=False)], progress=False)  # no run_dir: nothing written, no error


def test_show_displays_without_a_kernel(capsys):
    "Outside IPython, display() prints reprs: the monitor must still run through."
    step, state = _replay(synthetic_history("balanced", 30))
    fit(step, state, _data(), 30, [LossMonitor(every=10)], progress=False)


def test_no_figures_leak_into_pyplot():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    for _ in range(5):
        figure_png(figure(synthetic_history("balanced", 60)))
    assert plt.get_fignums() == before


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="every: expected a positive integer"):
        LossMonitor(every=0)
    with pytest.raises(ValueError, match="smoothing: expected one of"):
        LossMonitor(smoothing="median")
    with pytest.raises(TypeError):
        LossMonitor(strong_acuracy=0.9)  # a misspelt threshold is refused, not ignored
    with pytest.raises(ValueError, match="case: expected one of"):
        synthetic_history("exploding")
