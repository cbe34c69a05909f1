"""fit under torchrun: two gloo processes on the CPU train what one process trains at the same global batch,
process 0 alone writes, checkpoints move between process counts, and the three models train on two processes.

One `torchrun --standalone --nproc_per_node 2` launch runs every two-process scenario (this file is also the
worker script: `python -m torch.distributed.run ... tests/test_distributed.py OUT`); the tests compare what the
two processes left in OUT with one process trained here, in the pytest process."""
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from genmodels.core import Abort, Callback, Checkpoint, Config, TrainingStopped, batches, fit, init_distributed, seed_everything

pytestmark = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="this torch has no torch.distributed with gloo")
GLOBAL_BATCH = 8
DRAWS = []  # the first noise value of every step of this process (noisy toy runs)
SEEN = []  # the inputs of every batch this process trained on (when recorded)


# ---------------------------------------------------------------- the toy problem, shared by both sides
@dataclass(frozen=True)
class ToyConfig(Config):
    lr: float = 0.02
    noise: float = 0.0  # 0: deterministic steps, comparable across process counts
    seed: int = 0


class Points(torch.utils.data.Dataset):
    "32 fixed points of a smooth function of 3 inputs, indexed (epoch, i) as core.batches does."
    def __init__(self, n=32, bad_at=None):
        g = torch.Generator().manual_seed(1)
        self.x = torch.rand(n, 3, generator=g) * 2 - 1
        self.y = torch.sin(self.x @ torch.tensor([[1.5], [-2.0], [0.7]])) + 0.3
        if bad_at is not None:
            self.x[bad_at] = float("nan")  # all 3 inputs of one point

    def __len__(self):
        return len(self.x)

    def __getitem__(self, key):
        epoch, i = key
        return {"x": self.x[i], "y": self.y[i]}


def toy_state(config=ToyConfig()):
    seed_everything(config.seed)
    net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    return {"config": config, "net": net, "opt": opt, "sched": torch.optim.lr_scheduler.StepLR(opt, 2, 0.5),
            "steps_done": torch.zeros((), dtype=torch.long)}


def toy_step(state, batch):
    "A regression step whose Adam moments and schedule live in the state (so they travel in checkpoints)."
    cfg = state["config"]
    noise = torch.randn_like(batch["y"])
    if cfg.noise:
        DRAWS.append(noise[0, 0].item())
    loss = ((state["net"](batch["x"]) - batch["y"] - cfg.noise * noise) ** 2).mean()
    state["opt"].zero_grad(set_to_none=True)
    loss.backward()
    state["opt"].step()
    state["sched"].step()
    state["steps_done"] += 1
    return {"loss": loss, "lr": state["sched"].get_last_lr()[0]}


def recording_step(state, batch):
    SEEN.append(batch["x"].clone())
    return toy_step(state, batch)


def toy_fit(n_steps, run_dir=None, resume=None, config=ToyConfig(), callbacks=(), data=None, step=toy_step):
    return fit(step, toy_state(config), data or batches(Points(), GLOBAL_BATCH, seed=3), n_steps, callbacks,
               run_dir=run_dir, kind="toy", resume=resume, progress=False)


def weights(state, parts=("net",)):
    "Parameters and buffers of some modules of a state, as plain CPU tensors."
    return {f"{k}.{name}": t.detach().clone() for k in parts for name, t in state[k].state_dict().items()}


def tiny_gan():
    from genmodels.gan import GANConfig
    return GANConfig.preset("quick", tile_size=16, z_dim=8, g_width=8, d_width=8, batch_size=8, n_steps=2, n_sections=1,
                            section_size=128, n_tiles=64, sample_every=2, checkpoint_every=1)


def tiny_pix2pix():
    from genmodels.pix2pix import Pix2PixConfig
    return Pix2PixConfig.preset("quick", tile_size=32, g_width=4, max_width=8, d_width=4, batch_size=4, n_steps=2, n_sections=1,
                                section_size=256, n_tiles=32, sample_every=2, checkpoint_every=1)


def tiny_stylegan():
    from genmodels.stylegan3d import StyleGAN3DConfig
    return StyleGAN3DConfig.preset("quick", size=16, z_dim=8, w_dim=16, g_width=4, d_width=4, max_width=16, n_steps=2,
                                   batch_size=4, sample_every=2, checkpoint_every=1)


# ---------------------------------------------------------------- the worker: run by torchrun, twice
class SeesEveryRank(Callback):
    all_ranks = True

    def __init__(self):
        self.steps = []

    def on_step(self, run, logs):
        self.steps.append(run.step)


class SeesRankZeroOnly(SeesEveryRank):
    all_ranks = False


def _watch_writes(root: Path, seen: list):
    "Record every file or folder this process creates or opens for writing under root (an audit hook)."
    root = str(root)

    def hook(event, args):
        if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
            path, mode, flags = str(os.fsdecode(args[0])), args[1], args[2] if len(args) > 2 else 0
            writes = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
            if writes and path.startswith(root):
                seen.append(path)
        elif event in ("os.mkdir", "os.rename", "os.remove") and args and str(os.fsdecode(args[0])).startswith(root):
            seen.append(f"{event} {args[0]}")
    sys.addaudithook(hook)


def worker(out: Path):
    torch.set_num_threads(1)
    rank, world = init_distributed()
    runs = out / "runs"
    writes = []
    if rank != 0:
        _watch_writes(runs, writes)
    report = {"rank": rank, "world": world}

    # 1. six steps at global batch 8 (four steps per epoch: an epoch boundary is crossed), with checkpoints
    every, zero = SeesEveryRank(), SeesRankZeroOnly()
    two = toy_fit(6, runs / "two", callbacks=[Checkpoint(every=3), every, zero], step=recording_step)
    report["two"] = {"history": two.history, "weights": weights(two.state), "step": two.step, "seen": SEEN[:],
                     "every_rank_saw": every.steps, "rank_zero_saw": zero.steps, "last_checkpoint": str(two.last_checkpoint)}
    # 2. three steps and a checkpoint, which one process resumes in the test
    toy_fit(3, runs / "two_half", callbacks=[Checkpoint()])
    # 3. a checkpoint written by one process (in the test, before this launch) resumed here to step 6
    resumed = toy_fit(6, runs / "one_to_two", resume=out / "one_half" / "checkpoint.pt")
    report["one_to_two"] = {"history": resumed.history, "weights": weights(resumed.state)}
    # 4. with noise: each process draws its own; 6 steps equal 3 + 3 with a resume, bit for bit
    noisy = ToyConfig(noise=0.1)
    DRAWS.clear()
    report["noisy_whole"] = toy_fit(6, config=noisy).history
    report["draws"] = DRAWS[:]
    toy_fit(3, runs / "noisy", config=noisy, callbacks=[Checkpoint()])
    report["noisy_halves"] = toy_fit(6, runs / "noisy", config=noisy, resume=runs / "noisy" / "checkpoint.pt").history
    # 5. process 0's Abort stops every process after the same step
    stopped = toy_fit(6, callbacks=[Abort(when=lambda run: run.step >= 2)])
    report["abort"] = {"step": stopped.step, "reason": stopped.stop_reason}
    # 6. a NaN in process 1's share of the first batch stops both processes before training on it
    last_of_step_1 = torch.randperm(32, generator=torch.Generator().manual_seed(3 * 1_000_003))[GLOBAL_BATCH - 1]  # as batches orders
    nan_rank_1 = Points(bad_at=int(last_of_step_1))
    try:
        toy_fit(2, data=batches(nan_rank_1, GLOBAL_BATCH, seed=3))
        report["nan"] = "no error"
    except TrainingStopped as e:
        report["nan"] = str(e)
    # 7. a global batch that two processes cannot share
    try:
        toy_fit(2, data=batches(Points(), 5))
        report["indivisible"] = "no error"
    except ValueError as e:
        report["indivisible"] = str(e)

    # 8. the three models of the kit, two steps each (GAN: batch norm in G; pix2pix: schedules)
    from genmodels.gan import train_gan
    from genmodels.pix2pix import train_pix2pix
    run, state, _ = train_gan(tiny_gan(), runs / "gan", device="cpu", progress=False)
    report["gan"] = {"step": run.step, "run_dir": str(run.run_dir), "weights": weights(state, ("G", "D", "G_ema"))}
    run, state, _ = train_pix2pix(tiny_pix2pix(), runs / "pix2pix", device="cpu", progress=False)
    report["pix2pix"] = {"step": run.step, "run_dir": str(run.run_dir), "weights": weights(state, ("G", "D"))}
    # the 3D StyleGAN into a run folder made by new_run_dir (run_dir=None; the working folder is OUT)
    from genmodels.mri import VolumeDataset, fit_labels, load_cases
    from genmodels.stylegan3d import train_stylegan
    data = out / "data"
    cases, rows, columns = load_cases(data / "phantoms", 16, data / "cache", data / "phantoms" / "labels.csv", ["grade"])
    run, state = train_stylegan(tiny_stylegan(), VolumeDataset(cases, rows, fit_labels(rows, columns), augment=True),
                                device="cpu", progress=False)
    report["stylegan"] = {"step": run.step, "run_dir": str(run.run_dir), "weights": weights(state, ("G", "D", "G_ema"))}
    report["writes"] = writes
    torch.save(report, out / f"rank{rank}.pt")


# ---------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def launched(tmp_path_factory):
    "Prepare the inputs, launch the two processes once, and return their reports and the folder."
    out = tmp_path_factory.mktemp("distributed")
    toy_fit(3, out / "one_half", callbacks=[Checkpoint()])  # the one-process checkpoint that two processes resume
    from genmodels.mri import load_cases, make_phantom_dataset
    phantoms = make_phantom_dataset(out / "data" / "phantoms", n_cases=2, voxel_mm=4)
    load_cases(phantoms, 16, out / "data" / "cache", phantoms / "labels.csv", ["grade"])  # fill the cache once
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).resolve()), str(out)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=out, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its two workers: a hang must not outlive the test
        output, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in 240 s (a collective that not every process reached?):\n{output[-4000:]}")
    assert proc.returncode == 0, f"torchrun failed (exit {proc.returncode}):\n{output[-6000:]}"
    reports = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    return {"out": out, "reports": reports, "seconds": time.perf_counter() - t0}


def assert_close(a: dict, b: dict, rtol=1e-6):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=rtol, atol=1e-7, msg=lambda m: f"{k}: {m}")


def losses(history):
    return np.array([[h["loss"], h["lr"]] for h in history])


def test_two_processes_train_what_one_trains(launched):
    r0, r1 = (r["two"] for r in launched["reports"])
    assert launched["reports"][0]["world"] == 2 and r0["step"] == r1["step"] == 6
    for k in r0["weights"]:  # the two copies never drift apart: equal, not close
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
    strip = lambda hs: [{k: v for k, v in h.items() if k != "step_time"} for h in hs]  # step_time is each process's own
    assert strip(r0["history"]) == strip(r1["history"])  # the logs are the mean over the processes, the same on each
    SEEN.clear()
    one = toy_fit(6, step=recording_step)  # one process, the same global batch of 8
    for s, whole in enumerate(SEEN):  # process r trained on the r-th half of the batch one process trains on
        assert len(r0["seen"][s]) == len(r1["seen"][s]) == GLOBAL_BATCH // 2
        assert torch.equal(torch.cat([r0["seen"][s], r1["seen"][s]]), whole)
    assert_close(r0["weights"], weights(one.state))
    np.testing.assert_allclose(losses(r0["history"]), losses(one.history), rtol=1e-6)


def test_process_zero_alone_writes(launched):
    r0, r1 = launched["reports"]
    assert r1["writes"] == [], f"process 1 wrote {r1['writes']}"
    assert r0["two"]["rank_zero_saw"] == list(range(1, 7)) and r1["two"]["rank_zero_saw"] == []
    assert r0["two"]["every_rank_saw"] == r1["two"]["every_rank_saw"] == list(range(1, 7))
    run = launched["out"] / "runs" / "two"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "log.jsonl"]  # no temporary files either
    logged = [json.loads(l) for l in (run / "log.jsonl").read_text().splitlines()]
    assert [l["step"] for l in logged] == list(range(1, 7))  # one line per step, not one per process
    assert [l["loss"] for l in logged] == [h["loss"] for h in r0["two"]["history"]]  # the mean over processes
    assert r1["two"]["last_checkpoint"] == str(run / "checkpoint.pt")  # told by process 0


def test_checkpoint_of_two_processes_resumes_in_one(launched):
    ck = launched["out"] / "runs" / "two_half" / "checkpoint.pt"
    state = torch.load(ck, weights_only=True)
    assert all(not k.startswith("module.") for k in state["parts"]["net"])  # plain state_dicts
    resumed, whole = toy_fit(6, launched["out"] / "resumed_in_one", resume=ck), toy_fit(6)
    assert [h["step"] for h in resumed.history] == [4, 5, 6]
    assert_close(weights(resumed.state), weights(whole.state))
    np.testing.assert_allclose(losses(resumed.history), losses(whole.history[3:]), rtol=1e-6)


def test_checkpoint_of_one_process_resumes_in_two(launched):
    whole = toy_fit(6)
    for report in launched["reports"]:
        assert [h["step"] for h in report["one_to_two"]["history"]] == [4, 5, 6]
        assert_close(report["one_to_two"]["weights"], weights(whole.state))
        np.testing.assert_allclose(losses(report["one_to_two"]["history"]), losses(whole.history[3:]), rtol=1e-6)


def test_noise_differs_per_process_and_resumes_exactly(launched):
    r0, r1 = launched["reports"]
    strip = lambda hs: [(h["step"], h["loss"], h["lr"]) for h in hs]
    assert strip(r0["noisy_halves"]) == strip(r0["noisy_whole"][3:])  # bit for bit with two processes
    assert strip(r0["noisy_whole"]) == strip(r1["noisy_whole"])  # the logs are the same mean everywhere
    assert len(r0["draws"]) == len(r1["draws"]) == 6 and all(a != b for a, b in zip(r0["draws"], r1["draws"]))


def test_a_stop_on_process_zero_stops_every_process(launched):
    for report in launched["reports"]:
        assert report["abort"] == {"step": 2, "reason": "stopped by the abort condition"}


def test_nan_in_one_share_stops_both(launched):
    r0, r1 = launched["reports"]
    assert r1["nan"] == ("step 1: the batch's 'x' holds 3 NaN or Inf value(s) (process 1); training stopped before "
                         "using it (check the data or its normalisation)")
    assert r0["nan"].startswith("step 1: another process's batch holds NaN or Inf values; training stopped")


def test_batch_that_does_not_divide_is_refused(launched):
    for report in launched["reports"]:
        assert report["indivisible"] == ("batch_size: 5 cannot be split equally among 2 processes; expected a multiple of 2 "
                                         "(batch_size is the global batch of a step, summed over the processes)")


@pytest.mark.parametrize("model", ["gan", "pix2pix", "stylegan"])
def test_models_on_two_processes(launched, model):
    r0, r1 = (r[model] for r in launched["reports"])
    assert r0["step"] == r1["step"] == 2
    assert r0["run_dir"] == r1["run_dir"]  # one folder, made by process 0
    run = Path(r0["run_dir"])
    for k in r0["weights"]:  # G, D (and G_ema): parameters and buffers, batch-norm statistics included
        assert torch.equal(r0["weights"][k], r1["weights"][k]), k
    files = ["checkpoint.pt", "log.jsonl", "samples"]
    if model == "stylegan":  # new_run_dir: one folder for both processes, with its config.json
        assert run.parent == launched["out"] / "runs" and run.name.endswith("-stylegan3d")
        assert [p.name for p in (launched["out"] / "runs").iterdir() if p.name.endswith("stylegan3d")] == [run.name]
        files = ["checkpoint.pt", "config.json", "log.jsonl", "samples"]
    assert sorted(p.name for p in run.iterdir()) == files
    assert len((run / "log.jsonl").read_text().splitlines()) == 2
    assert [p.name for p in (run / "samples").iterdir()] == ["step_000002.png"]


if __name__ == "__main__":  # a torchrun worker
    worker(Path(sys.argv[1]))
