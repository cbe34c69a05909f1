"""The volumetric StyleGAN through the shared loop: exact resume, bad inputs, mixed precision and checkpointing on the CPU."""
import json

import numpy as np
import pytest
import torch

from genmodels.core import CheckpointError, TrainingStopped, batches, fit
import genmodels.mri as mri
import genmodels.stylegan3d as stylegan3d
from genmodels.mri import VolumeDataset, fit_labels, load_cases, make_phantom_dataset
from genmodels.stylegan3d import (StyleGAN3DConfig, generate, load_stylegan, make_stylegan_state, memory_estimate,
                                  stylegan_step, train_stylegan)


def tiny(**kw):
    return StyleGAN3DConfig.preset("quick", **{**dict(size=16, z_dim=8, w_dim=16, g_width=4, d_width=4, max_width=16,
                                                     n_steps=6, sample_every=3, checkpoint_every=3), **kw})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("stylegan3d")
    phantoms = make_phantom_dataset(root / "phantoms", n_cases=2, voxel_mm=4)
    cases, rows, columns = load_cases(phantoms, 16, root / "cache", phantoms / "labels.csv", ["grade"])
    spec = fit_labels(rows, columns)
    return dict(root=root, phantoms=phantoms, cases=cases, rows=rows, spec=spec,
                train=VolumeDataset(cases, rows, spec, augment=True))


def logged(run_dir):
    return [(r["step"], r["loss_D"], r["loss_G"], r["D_real"], r["D_fake"])
            for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def test_exact_resume_bit_for_bit(tmp_path, data):
    cfg = tiny()
    train_stylegan(cfg, data["train"], tmp_path / "whole", device="cpu", deterministic=True, progress=False)
    train_stylegan(cfg, data["train"], tmp_path / "halves", device="cpu", deterministic=True, progress=False, n_steps=3)
    train_stylegan(cfg, data["train"], tmp_path / "halves", device="cpu", deterministic=True, progress=False,
                   resume=tmp_path / "halves" / "checkpoint.pt")
    whole, halves = logged(tmp_path / "whole"), logged(tmp_path / "halves")
    assert [r[0] for r in halves] == list(range(1, 7))
    assert whole == halves  # equal floats, not close ones
    # a loaded checkpoint generates what the trained state generates
    state = load_stylegan(tmp_path / "whole" / "checkpoint.pt", device="cpu")
    _, trained = train_stylegan(cfg, data["train"], tmp_path / "again", device="cpu", deterministic=True, progress=False)
    labels = {"modality": "t2f", "grade": "high"}
    np.testing.assert_array_equal(generate(state, 2, labels, seed=1), generate(trained, 2, labels, seed=1))


@pytest.mark.parametrize("change, fields", [
    (dict(z_dim=16), "z_dim: 16 here, 8 in the checkpoint"),
    (dict(lr_D=1e-4), "lr_D: 0.0001 here, 0.0004 in the checkpoint"),
])
def test_resume_with_another_config_is_refused(tmp_path, data, change, fields):
    train_stylegan(tiny(), data["train"], tmp_path, device="cpu", progress=False, n_steps=3)
    with pytest.raises(CheckpointError, match=fields):
        train_stylegan(tiny(**change), data["train"], tmp_path / "b", device="cpu", progress=False,
                       resume=tmp_path / "checkpoint.pt")


def test_size_mismatch_names_the_field(data):
    with pytest.raises(ValueError, match="size"):
        train_stylegan(tiny(size=32), data["train"], None, device="cpu", progress=False)


def test_nan_batch_is_not_trained_on(data):
    state = make_stylegan_state(tiny(), data["spec"], device="cpu")
    batch = next(batches(data["train"], 4)(0))
    batch["volume"][0, 0, 3, 3, 3] = float("nan")
    before = {k: v.clone() for k, v in state["G"].state_dict().items()}
    with pytest.raises(TrainingStopped, match="step 1: the batch's 'volume' holds 1 NaN"):
        fit(stylegan_step, state, [batch], 2, kind="stylegan3d", progress=False)
    assert all(torch.equal(before[k], v) for k, v in state["G"].state_dict().items())


def test_mixed_precision_and_checkpointing_on_the_cpu(data):
    batch = next(batches(data["train"], 4)(0))
    logs = {}
    for name, cfg in {"plain": tiny(), "checkpointing": tiny(checkpointing=True),
                      "bfloat16": tiny(mixed_precision=True), "accumulate": tiny(accumulate=2)}.items():
        state = make_stylegan_state(cfg, data["spec"], device="cpu")
        torch.manual_seed(0)
        logs[name] = stylegan_step(state, batch)
        assert all(np.isfinite(float(v)) for v in logs[name].values()), name
    # recomputing the blocks (with the same noise) gives the same losses
    for key in ("loss_D", "loss_G"):
        assert float(logs["checkpointing"][key]) == pytest.approx(float(logs["plain"][key]), rel=1e-5, abs=1e-6)
    assert float(logs["bfloat16"]["loss_D"]) == pytest.approx(float(logs["plain"]["loss_D"]), rel=0.1, abs=0.05)


def test_memory_estimate_orders():
    cfg = StyleGAN3DConfig.preset("full")
    plain = memory_estimate(cfg.replace(size=64), 6, 4, False, False)
    assert memory_estimate(cfg.replace(size=64), 6, 4, True, False)["activations_bytes"] < plain["activations_bytes"]
    assert memory_estimate(cfg.replace(size=64), 6, 4, False, True)["activations_bytes"] < plain["activations_bytes"]
    big = memory_estimate(cfg.replace(size=128), 6, 4, False, False)
    assert 6 < big["activations_bytes"] / plain["activations_bytes"] < 10  # activations grow with the volume (8×)
    assert big["parameters_G"] > plain["parameters_G"] > 0  # one more synthesis block at 128³


def test_data_names_are_re_exported():
    "The label encoding, the case dataset and save_nifti live in mri; stylegan3d re-exports the same objects."
    names = ["fit_labels", "label_names", "encode_labels", "label_combinations", "load_cases", "split_cases",
             "VolumeDataset", "save_nifti"]
    for name in names:
        assert getattr(stylegan3d, name) is getattr(mri, name), name
        assert name in stylegan3d.__all__ and name in mri.__all__, name
    namespace = {}
    exec("from genmodels.stylegan3d import *", namespace)
    assert all(namespace[name] is getattr(mri, name) for name in names)


def test_generate_and_export_bad_inputs(tmp_path, data):
    state = make_stylegan_state(tiny(), data["spec"], device="cpu")
    with pytest.raises(KeyError, match="'grade'"):
        generate(state, 1, {"modality": "t1n"})
    with pytest.raises(ValueError, match="modality"):
        generate(state, 1, {"modality": "T1", "grade": "high"})
    with pytest.raises(ValueError, match="n: expected a positive"):
        generate(state, 0, {"modality": "t1n", "grade": "high"})
    volume = generate(state, 1, {"modality": "t1n", "grade": "high"})[0]
    path = mri.save_nifti(volume, tmp_path / "x.nii.gz", state["affine"], [data["phantoms"]])  # the state's affine
    np.testing.assert_allclose(mri.read_volume(path)[1], state["affine"].numpy())
    with pytest.raises(PermissionError, match="data folder"):
        mri.save_nifti(volume, data["phantoms"] / "x.nii.gz", state["affine"], [data["phantoms"]])
