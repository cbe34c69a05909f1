"""genmodels.volmetrics beyond the notebook: bad inputs name the argument, collapse and memorisation are caught, nothing runs on import."""
import subprocess
import sys

import numpy as np
import pytest
import torch

import genmodels.metrics as metrics
import genmodels.volmetrics as vm
from genmodels.mri import case_labels, load_case_cached, make_phantom_dataset

SIZE = 32


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    "8 phantom cases at 32³: images float32 [8, 4, 32, 32, 32] in [-1, 1] and grades ('high', 'low', …)."
    root = tmp_path_factory.mktemp("volmetrics")
    folder = make_phantom_dataset(root / "phantoms", n_cases=8, seed=0, voxel_mm=3)
    cases = [load_case_cached(p, SIZE, root / "cache") for p in sorted(folder.glob("PHANTOM-*"))]
    grades = [case_labels(c, folder / "labels.csv")["grade"] for c in cases]
    return np.stack([c["images"] for c in cases]), np.array(grades)


@pytest.fixture(scope="module")
def split(phantoms):
    "train (cases 0-3), heldout (4-5) and new (6-7) volumes of all modalities, float32 [n, 32, 32, 32]."
    images, _ = phantoms
    flat = lambda x: x.reshape(-1, SIZE, SIZE, SIZE)
    return flat(images[:4]), flat(images[4:6]), flat(images[6:])


def volumes(n=3, size=SIZE, seed=0):
    "Random volumes in [-1, 1], float32 [n, size, size, size]."
    return np.random.default_rng(seed).uniform(-1, 1, (n, size, size, size)).astype(np.float32)


# bad inputs: the message names the argument, what was expected and what was found

@pytest.mark.parametrize("shape, hint", [((SIZE, SIZE, SIZE), "volumes\\[None\\]"), ((2, 4, SIZE, SIZE, SIZE), "volumes\\[:, 0\\]"),
                                         ((2, SIZE, SIZE), ""), ((2, SIZE, 16, SIZE), "")])
def test_wrong_ndim_or_shape(shape, hint):
    with pytest.raises(ValueError, match=r"volumes: expected cubes \[N, S, S, S\], found shape .*" + hint):
        vm.volume_slices(np.zeros(shape, np.float32), "axial")


def test_single_channel_axis_accepted():
    v = volumes(2)
    assert np.array_equal(vm.volume_slices(v[:, None], "axial"), vm.volume_slices(v, "axial"))


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, bool])
def test_wrong_dtype(dtype):
    with pytest.raises(ValueError, match=f"volumes: expected float32 values in \\[-1, 1\\], found dtype {np.dtype(dtype)}"):
        vm.ms_ssim_diversity(np.zeros((3, SIZE, SIZE, SIZE), dtype))


def test_values_outside_range():
    with pytest.raises(ValueError, match=r"train: expected values in \[-1, 1\] \(background -1\), found \[0, 255\]; .*preprocess"):
        v = volumes(2)
        vm.nearest_real(v, np.round((v + 1) * 127.5), v)
    with pytest.raises(ValueError, match=r"fake: expected finite values .* found 1 NaN"):
        bad = volumes(2)
        bad[0, 0, 0, 0] = np.nan
        vm.slice_fid(volumes(2), volumes(2, seed=1), bad)
    slightly_over = volumes(2) * 1.0005  # rounding slack is clipped, not refused
    assert vm.check_volumes(slightly_over).max() <= 1


def test_not_an_array():
    with pytest.raises(ValueError, match="fake: expected a float32 numpy array \\[N, S, S, S\\], found list"):
        vm.check_volumes([[0.0]], "fake")


def test_unknown_plane_and_positions():
    with pytest.raises(ValueError, match=r"plane: expected one of \['sagittal', 'coronal', 'axial'\], found 'transverse'"):
        vm.volume_slices(volumes(1), "transverse")
    with pytest.raises(ValueError, match=r"planes: expected some of \['sagittal', 'coronal', 'axial'\], found \['top'\]"):
        vm.slice_fid(volumes(2), volumes(2), volumes(2), planes=("top",))
    with pytest.raises(ValueError, match="positions: expected 0 ≤ first ≤ last ≤ 1, found \\(0.2, 1.5\\)"):
        vm.volume_slices(volumes(1), "axial", positions=(0.2, 1.5))


def test_too_few_volumes():
    with pytest.raises(ValueError, match="volumes: expected at least 2 volumes, found 1"):
        vm.ms_ssim_diversity(volumes(1))
    with pytest.raises(ValueError, match="real_reference: expected at least 2 volumes, found 1"):
        vm.slice_fid(volumes(1), volumes(2), volumes(2))
    with pytest.raises(ValueError, match="heldout: expected at least 2 volumes, found 1"):
        vm.nearest_real(volumes(2), volumes(2), volumes(1))
    with pytest.raises(ValueError, match="train_volumes: expected at least 2 volumes, found 1"):
        vm.conditional_fidelity(volumes(1), [0], volumes(2), [0, 1], volumes(2), [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="volumes: expected cubes of at least 8³ voxels, found 4³"):
        vm.ms_ssim_diversity(volumes(2, size=4))


def test_mismatched_sizes():
    with pytest.raises(ValueError, match="fake: expected volumes of real_reference's size 32³, found 16³"):
        vm.slice_fid(volumes(2), volumes(2), volumes(2, size=16))
    with pytest.raises(ValueError, match="heldout: expected volumes of fake's size 32³, found 16³"):
        vm.nearest_real(volumes(2), volumes(2), volumes(2, size=16))
    with pytest.raises(ValueError, match="fake_volumes: expected volumes of train_volumes's size 32³, found 16³"):
        vm.conditional_fidelity(volumes(2), [0, 1], volumes(2), [0, 1], volumes(2, size=16), [0, 1], ("a", "b"))


def test_bad_targets_and_classes():
    v = volumes(4)
    with pytest.raises(ValueError, match="heldout_targets: expected integer class indices 0…1, found dtype <U4"):
        vm.conditional_fidelity(v, [0, 1, 0, 1], v, ["high", "low", "high", "low"], v, [0, 1, 0, 1], ("low", "high"))
    with pytest.raises(ValueError, match=r"fake_targets: expected one class index per volume, shape \(4,\), found shape \(3,\)"):
        vm.conditional_fidelity(v, [0, 1, 0, 1], v, [0, 1, 0, 1], v, [0, 1, 0], ("low", "high"))
    with pytest.raises(ValueError, match="train_targets: expected every class among the training volumes, found none of \\['c'\\]"):
        vm.conditional_fidelity(v, [0, 1, 0, 1], v, [0, 1, 0, 1], v, [0, 1, 0, 1], ("a", "b", "c"))
    with pytest.raises(ValueError, match="model: expected a classifier of the 2 classes"):
        vm.conditional_fidelity(v, [0, 1, 0, 1], v, [0, 1, 0, 1], v, [0, 1, 0, 1], ("a", "b"), model=vm.VolumeClassifier(3))
    with pytest.raises(ValueError, match="volumes: expected volumes of the classifier's size 64³, found 32³"):
        vm.predict_classes(vm.VolumeClassifier(2, size=64), v)


def test_other_arguments():
    with pytest.raises(ValueError, match="n_pairs: expected a whole number ≥ 1 or None, found 0"):
        vm.ms_ssim_diversity(volumes(3), n_pairs=0)
    with pytest.raises(ValueError, match="ssim_candidates: expected a whole number ≥ 1 or None, found 0"):
        vm.nearest_real(volumes(2), volumes(2), volumes(2), ssim_candidates=0)
    with pytest.raises(ValueError, match="n_slices: expected a whole number ≥ 1, found 2.5"):
        vm.volume_slices(volumes(1), "axial", n_slices=2.5)


# the extractor: registered on demand, not on import; fid_kid accepts it by name

def test_import_registers_nothing():
    code = ("import torch_fidelity.registry as r, genmodels.volmetrics; "
            "assert 'mri-slice' not in r.FEATURE_EXTRACTORS_REGISTRY, 'registered on import'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_registered_extractor_is_accepted_by_fid_kid(split):
    train, heldout, _ = split
    assert vm.register_mri_extractor() == vm.register_mri_extractor() == "mri-slice"
    assert "mri-slice" in metrics.extractor_names()
    slices = vm.volume_slices(train, "axial", n_slices=2)
    other = vm.volume_slices(heldout, "axial", n_slices=4)
    out = metrics.fid_kid(slices, other, extractor="mri-slice", layer="texture")
    assert out["extractor"] == "mri-slice" and out["layer"] == "texture" and out["fid"] > 0
    with pytest.raises(ValueError, match=r"extractor: expected one of \['fom-orientation', 'inception'\], found 'vgg16'; also accepted: .*mri-slice"):
        metrics.fid_kid(slices, other, extractor="vgg16")


def test_slice_fid_writes_nothing_and_keeps_threads(split, tmp_path, monkeypatch):
    train, heldout, new = split
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    out = vm.slice_fid(heldout, train[:8], new, planes="coronal", n_slices=4)
    assert list(out["planes"]) == ["coronal"]
    assert "32 generated slices (8 volumes) vs 32 real held-out (8)" in out["summary"]
    assert not any(tmp_path.iterdir())
    assert torch.get_num_threads() == threads


# behaviour: the metrics see what they are for

def test_collapse_detected_by_ms_ssim(split):
    train, _, _ = split
    t1n = train[::4]  # one modality, 4 cases
    rng = np.random.default_rng(0)
    collapsed = np.clip(np.repeat(t1n[:1], 4, 0) + rng.normal(0, 0.02, (4, SIZE, SIZE, SIZE)), -1, 1).astype(np.float32)
    real, fake = vm.ms_ssim_diversity(t1n), vm.ms_ssim_diversity(collapsed)
    assert real["n_pairs"] == fake["n_pairs"] == 6 and real["n_scales"] == 3 and real["kernel_size"] == 5
    assert fake["mean"] > 0.99 > real["mean"]
    assert vm.ms_ssim_diversity(np.repeat(t1n[:1], 3, 0))["mean"] == pytest.approx(1.0, abs=1e-5)


def test_memorisation_flagged_for_copies_not_for_heldout(split):
    train, heldout, new = split
    rng = np.random.default_rng(0)
    copies = np.clip(train[[1, 3, 4, 6, 9, 11, 12, 14]] + rng.normal(0, 0.02, (8, SIZE, SIZE, SIZE)), -1, 1).astype(np.float32)
    copied, honest = vm.nearest_real(copies, train, heldout), vm.nearest_real(new, train, heldout)
    assert copied["flagged"] and copied["share_mse_below"] == 1.0
    assert list(copied["fake_mse_index"]) == [1, 3, 4, 6, 9, 11, 12, 14]  # the copies are traced to their originals
    assert not honest["flagged"]
    assert "FLAGGED" in copied["summary"] and "ok" in honest["summary"]
    assert honest["fake_mse"].shape == (8,) and honest["heldout_ssim"].shape == (8,)


def test_conditional_fidelity_sees_ignored_labels(split):
    train, heldout, new = split
    modality = lambda v: np.tile(np.arange(4), len(v) // 4)
    threads = torch.get_num_threads()
    faithful = vm.conditional_fidelity(train, modality(train), heldout, modality(heldout), new, modality(new),
                                       ("t1n", "t1c", "t2w", "t2f"), label="modality", n_steps=150)
    ignored = vm.conditional_fidelity(train, modality(train), heldout, modality(heldout), new, modality(new)[::-1],
                                      ("t1n", "t1c", "t2w", "t2f"), model=faithful["model"])
    assert torch.get_num_threads() == threads
    assert faithful["chance"] == 0.25 and faithful["heldout_accuracy"] >= 0.6
    assert faithful["fake_accuracy"] > ignored["fake_accuracy"] + 0.3
    assert faithful["confusion"].sum() == len(new)
    assert "ceiling, held-out real" in faithful["summary"] and "chance 0.25" in faithful["summary"]


def test_classifier_is_seeded(split):
    train, _, _ = split
    targets = np.tile(np.arange(4), 4)
    state = torch.random.get_rng_state()
    a, b = (vm.train_classifier(train, targets, 4, n_steps=5, seed=3) for _ in range(2))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(torch.random.get_rng_state(), state)  # the global generator is left alone
    assert 0 <= vm.classifier_accuracy(a, train, targets) <= 1


def test_unknown_device():
    with pytest.raises(ValueError, match="device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', found 'tpu'"):
        vm.ms_ssim_diversity(volumes(2), device="tpu")
