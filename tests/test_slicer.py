"""genmodels.slicer beyond the notebook: bad inputs, orientation of every plane, crosshair linking, no pyplot leaks."""
import numpy as np
import pytest

from genmodels.slicer import (MODALITIES, VolumeSlicer, as_volumes, phantom_volume, plane, slicer_figure)

SHAPE = (10, 14, 18)  # X, Y, Z all different, so a transposed plane cannot pass by accident
MARK = (3, 11, 5)  # the marker voxel (x, y, z)


@pytest.fixture
def marked():
    "A [10, 14, 18] volume of zeros with one bright voxel at MARK."
    v = np.zeros(SHAPE, np.float32)
    v[MARK] = 1
    return v


@pytest.fixture(scope="module")
def phantom():
    "The notebook's 4-modality phantom at 24 voxels a side, and its labels."
    return phantom_volume(24, seed=0)


def _lines(ax):
    "The (vertical line's x, horizontal line's y) of a panel's crosshair."
    lines = {line.get_gid(): line for line in ax.get_lines()}
    return lines["crosshair-vertical"].get_xdata()[0], lines["crosshair-horizontal"].get_ydata()[0]


# orientation: where the marker voxel lands in each plane

@pytest.mark.parametrize("axis, expected_shape, expected_pixel", [
    (0, (18, 14), (18 - 1 - 5, 11)),  # sagittal [Z, Y]: row Z-1-z (superior up), column y (anterior right)
    (1, (18, 10), (18 - 1 - 5, 3)),  # coronal [Z, X]: row Z-1-z (superior up), column x (subject's right on the right)
    (2, (14, 10), (14 - 1 - 11, 3)),  # axial [Y, X]: row Y-1-y (anterior up), column x
])
def test_plane_orientation(marked, axis, expected_shape, expected_pixel):
    image = plane(marked, axis, MARK[axis])
    assert image.shape == expected_shape
    assert np.argwhere(image).tolist() == [list(expected_pixel)]
    other = (MARK[axis] + 1) % SHAPE[axis]
    assert not plane(marked, axis, other).any()  # the marker is only in its own slice


def test_figure_uses_plane_and_crosshair_meets_marker(marked):
    fig = slicer_figure(marked, MARK)
    axial, coronal, sagittal = fig.axes[:3]
    for ax, axis in ((axial, 2), (coronal, 1), (sagittal, 0)):
        shown = np.asarray(ax.images[0].get_array())
        np.testing.assert_array_equal(shown, plane(marked, axis, MARK[axis]))
        row, col = np.argwhere(shown)[0]
        assert _lines(ax) == (col, row)  # the crosshair lines cross exactly on the marker voxel
        assert ax.get_title().endswith(f"{'xyz'[axis]}={MARK[axis]}")


def test_spacing_sets_aspect(marked):
    fig = slicer_figure(marked, MARK, spacing=(1.0, 2.0, 3.0))
    axial, coronal, sagittal = fig.axes[:3]
    assert axial.get_aspect() == pytest.approx(2.0)  # y / x
    assert coronal.get_aspect() == pytest.approx(3.0)  # z / x
    assert sagittal.get_aspect() == pytest.approx(1.5)  # z / y


# bad inputs name the argument, what was expected and what was found

def test_non_3d_modality():
    with pytest.raises(ValueError, match=r"volumes\['t1n'\]: expected a 3-D array \[X, Y, Z\], found shape \(4, 5\)"):
        VolumeSlicer({"t1n": np.zeros((4, 5))})


def test_array_of_wrong_rank():
    with pytest.raises(ValueError, match=r"volumes: expected a dict of 3-D arrays \[X, Y, Z\] or one array \[M, X, Y, Z\], found shape \(1, 2, 3, 4, 5\)"):
        VolumeSlicer(np.zeros((1, 2, 3, 4, 5)))


def test_figure_volume_not_3d():
    with pytest.raises(ValueError, match=r"volume: expected a 3-D array \[X, Y, Z\], found shape \(4, 4\)"):
        slicer_figure(np.zeros((4, 4)), (0, 0, 0))


def test_modalities_of_different_shapes():
    with pytest.raises(ValueError, match=r"volumes: expected all modalities of one shape, found .*'t1n': \(4, 5, 6\).*'t2w': \(4, 5, 7\)"):
        VolumeSlicer({"t1n": np.zeros((4, 5, 6)), "t2w": np.zeros((4, 5, 7))})


def test_names_mismatch():
    with pytest.raises(ValueError, match=r"names: expected 2 distinct names .* found \['a'\]"):
        VolumeSlicer(np.zeros((2, 4, 4, 4)), names=["a"])


def test_segmentation_shape_mismatch(phantom):
    volumes, labels = phantom
    with pytest.raises(ValueError, match=r"segmentation: expected the volumes' shape \(24, 24, 24\), found \(24, 24, 23\)"):
        VolumeSlicer(volumes, labels[:, :, :23])


def test_segmentation_bad_labels(phantom):
    volumes, labels = phantom
    with pytest.raises(ValueError, match=r"segmentation: expected labels 0–3 .* found values 0..4"):
        VolumeSlicer(volumes, np.where(labels == 3, 4, labels))
    with pytest.raises(ValueError, match=r"segmentation: expected integer labels 0–3"):
        VolumeSlicer(volumes, labels + 0.5)


@pytest.mark.parametrize("crosshair, message", [
    ((10, 0, 0), r"crosshair: expected x in 0..9, found 10"),
    ((0, -1, 0), r"crosshair: expected y in 0..13, found -1"),
    ((0, 0, 18), r"crosshair: expected z in 0..17, found 18"),
    ((0, 0), r"crosshair: expected three voxel indices \(x, y, z\), found \(0, 0\)"),
])
def test_crosshair_out_of_range(marked, crosshair, message):
    with pytest.raises(ValueError, match=message):
        slicer_figure(marked, crosshair)
    with pytest.raises(ValueError, match=message):
        VolumeSlicer({"t1n": marked}, crosshair=crosshair)
    slicer = VolumeSlicer({"t1n": marked})
    with pytest.raises(ValueError, match=message):
        slicer.update(crosshair=crosshair)


def test_unknown_modality(phantom):
    volumes, _ = phantom
    with pytest.raises(ValueError, match=r"modality: expected one of t1n, t1c, t2w, t2f, found 'flair'"):
        VolumeSlicer(volumes, modality="flair")
    slicer = VolumeSlicer(volumes)
    with pytest.raises(ValueError, match=r"modality: expected one of t1n, t1c, t2w, t2f, found 'flair'"):
        slicer.update(modality="flair")


def test_generated_mismatch(phantom):
    volumes, labels = phantom
    with pytest.raises(ValueError, match=r"generated: expected the modalities \['t1n', 't1c', 't2w', 't2f'\], found \['t1n'\]"):
        VolumeSlicer(volumes, generated={"t1n": volumes["t1n"]})
    with pytest.raises(ValueError, match=r"generated: expected the volumes' shape \(24, 24, 24\), found \(24, 24, 20\)"):
        VolumeSlicer(volumes, generated={k: v[..., :20] for k, v in volumes.items()})


# inputs that are fine

def test_array_input_gets_brats_names(phantom):
    volumes, _ = phantom
    stacked = np.stack([volumes[m] for m in MODALITIES])  # [4, 24, 24, 24]
    assert list(as_volumes(stacked)) == list(MODALITIES)
    slicer = VolumeSlicer(stacked, names=["a", "b", "c", "d"])
    assert list(slicer.modality.options) == ["a", "b", "c", "d"]


# linking: the controls move the planes and the lines, headless

def test_sliders_redraw_and_move_crosshair(phantom):
    volumes, labels = phantom
    slicer = VolumeSlicer(volumes, labels)
    assert slicer.crosshair == (12, 12, 12)
    for axis, value in ((0, 5), (1, 17), (2, 3)):
        before = slicer.image.value
        slicer.sliders[axis].value = value
        assert slicer.image.value != before, f"moving {'xyz'[axis]} did not change the PNG"
    assert slicer.crosshair == (5, 17, 3)
    fig = slicer.figure()
    axial, coronal, sagittal = fig.axes[:3]
    X, Y, Z = 24, 24, 24
    assert _lines(axial) == (5, Y - 1 - 17)
    assert _lines(coronal) == (5, Z - 1 - 3)
    assert _lines(sagittal) == (17, Z - 1 - 3)
    np.testing.assert_array_equal(np.asarray(sagittal.images[0].get_array()), plane(volumes["t1n"], 0, 5))
    np.testing.assert_array_equal(np.asarray(axial.images[0].get_array()), plane(volumes["t1n"], 2, 3))


def test_modality_and_overlay_controls(phantom):
    volumes, labels = phantom
    slicer = VolumeSlicer(volumes, labels, crosshair=(14, 13, 14))
    before = slicer.image.value
    slicer.modality.value = "t2f"
    assert slicer.image.value != before
    np.testing.assert_array_equal(np.asarray(slicer.figure().axes[0].images[0].get_array()), plane(volumes["t2f"], 2, 14))
    assert all(len(ax.images) == 2 for ax in slicer.figure().axes[:3])  # grey image + overlay
    before = slicer.image.value
    slicer.opacity.value = 0.9
    assert slicer.image.value != before
    slicer.show_overlay.value = False
    assert all(len(ax.images) == 1 for ax in slicer.figure().axes[:3])


def test_update_redraws_once(phantom, monkeypatch):
    volumes, labels = phantom
    slicer = VolumeSlicer(volumes, labels)
    calls = []
    original = slicer.figure
    monkeypatch.setattr(slicer, "figure", lambda: calls.append(1) or original())
    slicer.update(crosshair=(1, 2, 3), modality="t1c", overlay_alpha=0.1)
    assert len(calls) == 1
    assert slicer.crosshair == (1, 2, 3) and slicer.modality.value == "t1c"


def test_generated_row(phantom):
    volumes, labels = phantom
    generated = {k: -v for k, v in volumes.items()}
    slicer = VolumeSlicer(volumes, labels, generated=generated, crosshair=(14, 13, 14), modality="t2w")
    fig = slicer.figure()
    assert len(fig.axes) == 6
    for c, axis in enumerate((2, 1, 0)):
        real, fake = fig.axes[c], fig.axes[3 + c]
        np.testing.assert_array_equal(np.asarray(fake.images[0].get_array()), plane(generated["t2w"], axis, slicer.crosshair[axis]))
        assert real.images[0].get_clim() == fake.images[0].get_clim()  # one window for both rows
        assert _lines(real) == _lines(fake)


def test_no_pyplot_figures_left(phantom):
    import matplotlib.pyplot as plt
    volumes, labels = phantom
    plt.close("all")
    slicer = VolumeSlicer(volumes, labels)
    for value in range(3):
        slicer.sliders[2].value = value
    slicer_figure(volumes["t1n"], (1, 1, 1), labels)
    assert plt.get_fignums() == []
