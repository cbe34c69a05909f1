"""GAN training through the shared loop: exact resume, and the bad inputs named in the docs."""
import json

import numpy as np
import pytest
import torch

from genmodels.core import CheckpointError, TrainingStopped, batches, fit, save_checkpoint
from genmodels.fom import Section
from genmodels.gan import GANConfig, gan_step, gan_tiles, make_gan_state, train_gan


def tiny(**kw):
    return GANConfig.preset("quick", **{**dict(tile_size=16, z_dim=8, g_width=8, d_width=8, batch_size=8, n_steps=6, n_sections=1,
                                             section_size=128, n_tiles=64, sample_every=3, checkpoint_every=3), **kw})


@pytest.fixture(scope="module")
def tiles():
    return gan_tiles(tiny())


def losses(run_dir):
    return [(r["step"], r["loss_D"], r["loss_G"], r["D_real"], r["D_fake"])
            for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines())]


def test_exact_resume_bit_for_bit(tmp_path, tiles):
    cfg = tiny()
    train_gan(cfg, tmp_path / "whole", tiles=tiles, device="cpu", deterministic=True, progress=False)
    train_gan(cfg, tmp_path / "halves", tiles=tiles, device="cpu", deterministic=True, progress=False, n_steps=3)
    assert (tmp_path / "halves" / "checkpoint.pt").exists()
    train_gan(cfg, tmp_path / "halves", tiles=tiles, device="cpu", deterministic=True, progress=False,
              resume=tmp_path / "halves" / "checkpoint.pt")
    whole, halves = losses(tmp_path / "whole"), losses(tmp_path / "halves")
    assert [r[0] for r in halves] == list(range(1, 7))
    assert whole == halves  # bit for bit: the floats are equal, not close
    assert sorted(p.name for p in (tmp_path / "whole" / "samples").iterdir()) == ["step_000003.png", "step_000006.png"]


@pytest.mark.parametrize("change, fields", [
    (dict(tile_size=32, section_size=256), "tile_size: 32 here, 16 in the checkpoint"),
    (dict(z_dim=16), "z_dim: 16 here, 8 in the checkpoint"),
    (dict(batch_size=16, n_tiles=128), "batch_size: 16 here, 8 in the checkpoint"),
])
def test_resume_with_another_config_is_refused(tmp_path, tiles, change, fields):
    train_gan(tiny(), tmp_path, tiles=tiles, device="cpu", progress=False, n_steps=3)
    other = tiny(**change)
    with pytest.raises(CheckpointError, match=fields.replace("(", r"\(")):
        train_gan(other, tmp_path / "b", device="cpu", progress=False, resume=tmp_path / "checkpoint.pt")


def test_resume_with_another_preset_names_the_fields(tmp_path, tiles):
    train_gan(tiny(), tmp_path, tiles=tiles, device="cpu", progress=False, n_steps=3)
    full = GANConfig.preset("full")
    state = make_gan_state(GANConfig.preset("full", g_width=8, d_width=8), "cpu")
    with pytest.raises(CheckpointError, match=r"fields that differ: .*tile_size: 64 here, 16 in the checkpoint"):
        fit(gan_step, state, [], 10, kind="gan", resume=tmp_path / "checkpoint.pt", progress=False)
    assert full.tile_size == 64


def test_checkpoint_of_another_model_is_refused(tmp_path):
    save_checkpoint(tmp_path / "p2p.pt", {"config": {}, "step": 1, "parts": {}, "tensors": {}, "rng": {}}, kind="pix2pix")
    with pytest.raises(CheckpointError, match=r"expected a 'gan' checkpoint, found one of kind 'pix2pix'"):
        train_gan(tiny(), tmp_path / "run", device="cpu", progress=False, resume=tmp_path / "p2p.pt")


def test_no_usable_tiles():
    glass = Section(fom=np.zeros((64, 64, 3), np.uint8), transmittance=np.full((64, 64), 0.9, np.float32), name="glass")
    with pytest.raises(RuntimeError, match=r"GAN data: no usable tiles of 16 px with tissue fraction ≥ 0.5: .*best tissue fraction seen in this split: 0.000"):
        gan_tiles(tiny(), sections=[glass])


def test_nan_batch_is_not_trained_on(tmp_path, tiles):
    train, _ = tiles
    bad = train.tiles["fom"].copy()
    state = make_gan_state(tiny(), "cpu")
    before = [p.clone() for p in state["G"].parameters()]
    batch = {"fom": torch.full((8, 3, 16, 16), float("nan"))}
    with pytest.raises(TrainingStopped, match=r"step 1: the batch's 'fom' holds 6144 NaN or Inf value\(s\)"):
        fit(gan_step, state, [batch], 5, kind="gan", progress=False)
    assert all((a == b).all() for a, b in zip(before, state["G"].parameters()))
    assert bad.dtype == np.uint8  # the tiles themselves are untouched
