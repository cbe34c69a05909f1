"""genmodels.evaluation beyond the notebook: bad inputs, π-periodicity, NaN tiles, the viewer; and the sliding
windows of genmodels.tiler it judges whole sections with: coverage, lazy reading."""
import numpy as np
import pytest
import torch

import genmodels.evaluation as ev
from genmodels.fom import fom_from_angles
from genmodels.readers import LazyMap, read_section
from genmodels.tiler import sliding_window


def flat_fom(degrees, shape=(8, 8)):
    "A uint8 HSV-black FOM of flat fibres (|α| = 0) at one direction, [H, W, 3]."
    return fom_from_angles(np.full(shape, np.radians(degrees)), 0.0)


def identity3(batch):
    "An identity-like model: [B, 1, t, t] -> [B, 3, t, t]."
    return batch.repeat(1, 3, 1, 1)


@pytest.fixture
def odd_image():
    "A random map of an odd size, float32 [203, 157] in [0, 1)."
    return np.random.default_rng(0).random((203, 157), dtype=np.float32)


# bad inputs name the argument, what was expected and what was found

def test_shape_mismatch():
    with pytest.raises(ValueError, match=r"pred: expected the target's shape \(2, 8, 8, 3\), found \(2, 8, 6, 3\)"):
        ev.fom_errors(np.zeros((2, 8, 6, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 8, 8\)"):
        ev.fom_errors(np.zeros((2, 8, 8, 3), np.uint8), np.zeros((2, 8, 8, 3), np.uint8), mask=np.ones((2, 4, 4), bool))
    with pytest.raises(ValueError, match=r"target: expected FOM tiles \[N, H, W, 3\] or one tile \[H, W, 3\], found shape \(8, 8\)"):
        ev.fom_errors(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.uint8))


@pytest.mark.parametrize("dtype", [np.float32, np.uint16, np.int64])
def test_non_uint8(dtype):
    good = flat_fom(10)
    with pytest.raises(ValueError, match=f"pred: expected uint8 FOM values 0–255, found dtype {np.dtype(dtype)}"):
        ev.fom_errors(good.astype(dtype), good)
    with pytest.raises(ValueError, match=f"prediction: expected uint8 FOM values 0–255, found dtype {np.dtype(dtype)}"):
        ev.PairViewer(np.zeros((1, 8, 8), np.float32), good[None].astype(dtype))


def test_tiny_tiles_for_ssim():
    with pytest.raises(ValueError, match=r"SSIM needs tiles of at least 3×3 pixels, found 2×8"):
        ev.fom_errors(flat_fom(0, (2, 8)), flat_fom(0, (2, 8)))
    small = ev.fom_errors(flat_fom(0, (4, 5)), flat_fom(0, (4, 5)))  # window shrinks to 3
    assert small["ssim"][0] == pytest.approx(1.0)


# the metrics

@pytest.mark.parametrize("a, b, expected", [(5, 175, 10), (0, 179, 1), (10, 100, 90), (30, 60, 30), (0, 0, 0)])
def test_direction_error_is_pi_periodic(a, b, expected):
    assert np.degrees(ev.direction_difference(np.radians(a), np.radians(b))) == pytest.approx(expected)
    assert ev.fom_errors(flat_fom(a), flat_fom(b))["direction_error"][0] == pytest.approx(expected, abs=0.5)


def test_nan_for_tiles_without_flat_target_pixels():
    steep = fom_from_angles(np.zeros((8, 8)), np.radians(70))  # flatness 2/9 < 1/3
    black = np.zeros((8, 8, 3), np.uint8)  # background: no hue at all
    pred = np.stack([flat_fom(0)] * 3)
    target = np.stack([steep, black, flat_fom(20)])
    e = ev.fom_errors(pred, target)
    assert np.isnan(e["direction_error"][:2]).all() and e["direction_error"][2] == pytest.approx(20, abs=0.5)
    assert np.isnan(e["direction_coverage"][:2]).all()
    assert not np.isnan(e["mse"]).any() and not np.isnan(e["inclination_error"]).any()
    assert ev.summarise(e)["direction_error"][2] == 1  # n counts only tiles with a value
    # the same flat tile outside the mask: nothing to judge either
    masked = ev.fom_errors(flat_fom(0), flat_fom(20), mask=np.zeros((8, 8), bool))
    assert np.isnan(masked["direction_error"][0]) and np.isnan(masked["mse"][0])
    # a lower threshold lets the steep tile count
    assert not np.isnan(ev.fom_errors(flat_fom(0), steep, min_flatness=0.1)["direction_error"][0])


def test_grey_prediction_counts_at_chance():
    e = ev.fom_errors(np.full((8, 8, 3), 128, np.uint8), flat_fom(40))
    assert e["direction_error"][0] == ev.CHANCE_DIRECTION_ERROR and e["direction_coverage"][0] == 0


def test_mask_restricts_mse_and_ssim():
    target = flat_fom(0, (16, 16))
    pred = target.copy()
    pred[:, 8:] = 0  # wrong on the right half only
    mask = np.zeros((16, 16), bool)
    mask[:, :8] = True
    e = ev.fom_errors(pred, target, mask)
    assert e["mse"][0] == 0 and e["inclination_error"][0] == 0
    assert ev.fom_errors(pred, target)["mse"][0] > 0


def test_errors_table():
    e = ev.fom_errors(np.stack([flat_fom(0), flat_fom(10)]), np.stack([flat_fom(30), flat_fom(10)]))
    table = ev.errors_table({"A": e, "B": e})
    assert table.splitlines()[0] == "| metric | A | B |"
    assert "| direction error (°, flat fibres) | 15.0 ± 15.0 | 15.0 ± 15.0 |" in table
    assert "∞" in table  # the PSNR of the perfect tile
    with pytest.raises(ValueError, match="same tiles"):
        ev.errors_table({"A": e, "B": ev.fom_errors(flat_fom(0), flat_fom(0))})
    with pytest.raises(ValueError, match="non-empty dict"):
        ev.errors_table({})


# sliding window

@pytest.mark.parametrize("tile_size", [16, 64, 157])
@pytest.mark.parametrize("overlap", [0.0, 0.3, 0.5, 0.9])
def test_sliding_window_covers_odd_sizes(odd_image, tile_size, overlap):
    out = sliding_window(identity3, odd_image, tile_size, overlap=overlap, batch_size=7)
    assert out.shape == (3, 203, 157) and out.dtype == np.float32
    if overlap == 0:
        assert np.array_equal(out[1], odd_image)
    else:
        np.testing.assert_allclose(out[2], odd_image, atol=1e-6)


def test_sliding_window_counts_every_pixel(odd_image):
    "A model that outputs ones: with uniform weights every pixel comes out exactly 1 (covered, normalised)."
    out = sliding_window(lambda b: torch.ones_like(b), odd_image, 32, overlap=0.5, weight="uniform")
    np.testing.assert_allclose(out, 1, atol=1e-6)


def test_sliding_window_lazy_equals_memory(odd_image, tmp_path, monkeypatch):
    import tifffile
    tifffile.imwrite(tmp_path / "transmittance.tif", odd_image)
    lazy = read_section(transmittance=tmp_path / "transmittance.tif", lazy_above_mb=0).transmittance
    assert isinstance(lazy, LazyMap)
    reads = []
    original = LazyMap.__getitem__

    def spy(self, key):
        reads.append(key)
        return original(self, key)

    monkeypatch.setattr(LazyMap, "__getitem__", spy)
    for overlap in (0.0, 0.5):
        expected = sliding_window(identity3, odd_image, 64, overlap=overlap)
        np.testing.assert_array_equal(sliding_window(identity3, lazy, 64, overlap=overlap), expected)
    # read band by band: never more than a window's height of rows at once
    assert reads and all(k[0].stop - k[0].start <= 64 for k in reads)


def test_sliding_window_bad_inputs(odd_image):
    with pytest.raises(ValueError, match=r"tile_size: 256×256 px windows do not fit the image of 203×157 px"):
        sliding_window(identity3, odd_image, 256)
    for overlap in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=rf"overlap: expected a share in \[0, 1\), found {overlap}"):
            sliding_window(identity3, odd_image, 32, overlap=overlap)
    with pytest.raises(ValueError, match=r"image: expected a 2D map \[H, W\]"):
        sliding_window(identity3, odd_image[None], 32)
    with pytest.raises(ValueError, match="image: expected float values in \\[0, 1\\], found dtype uint8"):
        sliding_window(identity3, (odd_image * 255).astype(np.uint8), 32)
    with pytest.raises(ValueError, match=r"image: expected values in \[0, 1\], found \[0\.0\d+, 255\] in rows 0–32"):
        sliding_window(identity3, odd_image * 255, 32)
    with pytest.raises(ValueError, match=r"predict: expected a tensor \[B, C_out, 32, 32\]"):
        sliding_window(lambda b: b[..., :16], odd_image, 32)
    with pytest.raises(ValueError, match="predict: expected 2 output channels"):
        sliding_window(identity3, odd_image, 32, out_channels=2)
    with pytest.raises(ValueError, match="weight: expected one of"):
        sliding_window(identity3, odd_image, 32, weight="gauss")


def test_sliding_window_runs_a_module_on_its_device(odd_image):
    model = torch.nn.Conv2d(1, 2, 3, padding=1).eval()
    out = sliding_window(model, odd_image, 32, overlap=0.25)
    assert out.shape == (2, 203, 157) and np.isfinite(out).all()


# the viewer

def test_pair_viewer_without_target():
    n = 5
    trans = np.random.default_rng(1).random((n, 16, 16), dtype=np.float32)
    pred = np.stack([flat_fom(20 * i, (16, 16)) for i in range(n)])
    viewer = ev.PairViewer(trans, pred, per_page=2, names=list("abcde"))
    assert viewer.errors is None and viewer.n_pages == 3
    first = viewer.image.value
    assert first[:4] == b"\x89PNG"
    viewer.page.value = 3  # pages count from 1, as the title says
    assert viewer.image.value != first and "page 3/3" in viewer.figure()._suptitle.get_text()
    viewer.next.click()  # already on the last page
    assert viewer.page.value == 3
    fig = viewer.figure(0)
    assert len([ax for ax in fig.axes if ax.images]) == 2 * 2 + 1  # two columns, two rows, the legend
    import matplotlib.pyplot as plt
    plt.close(fig)


def test_pair_viewer_with_target_and_bad_inputs():
    n = 3
    trans = np.zeros((n, 16, 16), np.float32)
    target = np.stack([flat_fom(10 * i, (16, 16)) for i in range(n)])
    viewer = ev.PairViewer(trans, target, target, mask=np.ones((n, 16, 16), bool), per_page=4)
    assert viewer.n_pages == 1 and viewer.errors["mse"].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match=r"transmittance: expected tiles \[N, t, t\] matching the predictions \(3, 16, 16\), found \(2, 16, 16\)"):
        ev.PairViewer(trans[:2], target)
    with pytest.raises(ValueError, match=r"names: expected 3 names"):
        ev.PairViewer(trans, target, names=["a"])
    with pytest.raises(ValueError, match=r"pred: expected the target's shape"):
        ev.PairViewer(trans, target, target[:, :8])


def test_no_code_runs_on_import():
    import importlib, sys
    sys.modules.pop("genmodels.evaluation", None)
    module = importlib.import_module("genmodels.evaluation")
    assert callable(module.fom_errors) and module.sliding_window is sliding_window  # still importable from here
