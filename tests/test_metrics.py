"""genmodels.metrics beyond the notebook: bad inputs, registration, offline Inception, determinism, no writes."""
import importlib
import os

import numpy as np
import pytest
import torch

import genmodels.metrics as metrics
from genmodels.tiler import FOMTiler
from genmodels.synthetic import synthetic_section


@pytest.fixture(scope="module")
def tiles():
    "Real train and val FOM tiles, uint8 [64, 32, 32, 3] each."
    tiler = FOMTiler([synthetic_section(256, 0), synthetic_section(256, 1)], tile_size=32, seed=0)
    return tiler.sample(64, split="train").tiles["fom"], tiler.sample(64, split="val").tiles["fom"]


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch):
    "A torch home with nothing in it, so no cached Inception weights can be found."
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


# bad inputs name the argument, what was expected and what was found

def test_shape_mismatch(tiles):
    train, val = tiles
    with pytest.raises(ValueError, match=r"fake: expected tiles of the real tiles' shape 3×32×32, found 3×16×16"):
        metrics.fid_kid(train, val[:, :16, :16])


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.uint16])
def test_non_uint8(tiles, dtype):
    train, val = tiles
    with pytest.raises(ValueError, match=f"real: expected uint8 values 0–255, found dtype {np.dtype(dtype)}"):
        metrics.fid_kid(train.astype(dtype), val)


def test_float_tensor_in_model_range(tiles):
    train, val = tiles
    fake = torch.rand(8, 3, 32, 32) * 2 - 1  # a generator's [-1, 1] output, not converted
    with pytest.raises(ValueError, match=r"fake: expected uint8 .* found dtype torch.float32 .*127.5"):
        metrics.fid_kid(train, fake)


def test_channels_first_tensor_accepted(tiles):
    train, val = tiles
    as_tensor = torch.from_numpy(val).permute(0, 3, 1, 2).contiguous()  # uint8 [N, 3, H, W]
    assert metrics.fid_kid(train, as_tensor)["fid"] == pytest.approx(metrics.fid_kid(train, val)["fid"])


def test_wrong_layout(tiles):
    train, _ = tiles
    with pytest.raises(ValueError, match=r"images \[N, H, W, 3\] or \[N, 3, H, W\], found shape \(64, 32, 32\)"):
        metrics.fid_kid(train, train[..., 0])
    with pytest.raises(ValueError, match="real: expected a uint8 numpy array or torch tensor, found list"):
        metrics.fid_kid(train.tolist(), train)


def test_too_few_samples(tiles):
    train, val = tiles
    with pytest.raises(ValueError, match="fake: expected at least 2 images, found 1"):
        metrics.fid_kid(train, val[:1])


def test_unknown_extractor_and_layer(tiles):
    train, val = tiles
    with pytest.raises(ValueError, match=r"extractor: expected one of \['fom-orientation', 'inception'\], found 'vgg16'"):
        metrics.fid_kid(train, val, extractor="vgg16")
    with pytest.raises(ValueError, match="layer: expected one of .*'tracts'.* found 'colour'"):
        metrics.fid_kid(train, val, layer="colour")


def test_kid_subset_size(tiles):
    train, val = tiles
    with pytest.raises(ValueError, match=r"kid_subset_size: expected 2 … 20 .*min\(64, 20\).* found 64"):
        metrics.fid_kid(train, val[:20], kid_subset_size=64)
    assert metrics.fid_kid(train, val[:20], kid_subsets=5)["kid_subset_size"] == 20


def test_other_arguments(tiles):
    train, val = tiles
    with pytest.raises(ValueError, match="value_threshold: expected an HSV value in"):
        metrics.background_share(train, value_threshold=30)
    with pytest.raises(ValueError, match=r"reference: expected tiles of the queries' shape \(3, 32, 32\), found \(3, 16, 16\)"):
        metrics.nearest_distances(train, val[:, :16, :16])


# registration

def test_registration_is_idempotent(tiles):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
    assert metrics.register_fom_extractor() == "fom-orientation"
    assert metrics.register_fom_extractor() == "fom-orientation"
    reloaded = importlib.reload(metrics)  # importing the module again defines a new class of the same name
    assert FEATURE_EXTRACTORS_REGISTRY["fom-orientation"] is reloaded.FeatureExtractorFOM
    reloaded.register_fom_extractor()
    train, val = tiles
    assert np.isfinite(reloaded.fid_kid(train, val)["fid"])


def test_registration_refuses_a_foreign_extractor():
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, FeatureExtractorBase

    class Other(FeatureExtractorBase):
        pass

    FEATURE_EXTRACTORS_REGISTRY["fom-test-taken"] = Other
    try:
        with pytest.raises(ValueError, match="name: torch-fidelity already has a different feature extractor called 'fom-test-taken'"):
            metrics.register_fom_extractor("fom-test-taken")
    finally:
        del FEATURE_EXTRACTORS_REGISTRY["fom-test-taken"]


def test_torch_fidelity_calls_the_extractor_by_name(tiles):
    import torch_fidelity
    train, val = tiles
    out = torch_fidelity.calculate_metrics(
        input1=metrics.UInt8Images(train), input2=metrics.UInt8Images(val), fid=True, kid=True,
        feature_extractor="fom-orientation", feature_layer_fid="all", feature_layer_kid="direction",
        kid_subset_size=32, kid_subsets=5, cuda=False, cache=False, verbose=False, save_cpu_ram=True)
    assert out["frechet_inception_distance"] > 0 and np.isfinite(out["kernel_inception_distance_mean"])


# Inception offline

def test_missing_inception_weights(tiles, empty_torch_home):
    train, val = tiles
    with pytest.raises(FileNotFoundError) as err:
        metrics.fid_kid(train, val, extractor="inception")
    message = str(err.value)
    expected = empty_torch_home / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    assert str(expected) in message
    assert "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth" in message
    assert "inception_weights=" in message and "never downloads" in message
    assert not any(empty_torch_home.rglob("*"))  # nothing fetched, no cache folders made


def test_missing_explicit_inception_path(tiles, tmp_path):
    train, val = tiles
    with pytest.raises(FileNotFoundError, match="the path given"):
        metrics.fid_kid(train, val, extractor="inception", inception_weights=tmp_path / "nope.pth")


# determinism and no side effects

def test_deterministic(tiles):
    train, val = tiles
    first, second = metrics.fid_kid(train, val, seed=3), metrics.fid_kid(train, val, seed=3)
    assert first == second
    assert np.array_equal(metrics.fom_features(train), metrics.fom_features(train))


def test_writes_nothing_and_keeps_threads(tiles, empty_torch_home, tmp_path, monkeypatch):
    train, val = tiles
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    threads = torch.get_num_threads()
    metrics.fid_report(val, train[:32], train[32:])
    assert set(tmp_path.rglob("*")) == before  # no fidelity_cache, no files
    assert torch.get_num_threads() == threads


def test_report_names_extractor_counts_and_baseline(tiles):
    train, val = tiles
    report = metrics.fid_report(val, train[:32], train[32:], fake_name="generated")
    assert "FID (fom-orientation, 32 generated vs 64 real val tiles)" in report["summary"]
    assert "real-vs-real baseline (32 train vs 64 val)" in report["summary"]
    assert report["fake"]["kid_subset_size"] == report["baseline"]["kid_subset_size"] == 32
