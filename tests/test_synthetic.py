"""Synthetic sections from a user's side: bad knobs, coarse sizes, the extras an evaluation relies on."""
import math
import warnings

import numpy as np
import pytest

from genmodels.synthetic import SYNTHETIC_REGIONS, synthetic_section


@pytest.mark.parametrize("name, value, expected", [
    ("texture_contrast", -0.01, "[0, 1]"), ("texture_contrast", math.nan, "[0, 1]"), ("texture_contrast", 1e6, "[0, 1]"),
    ("texture_contrast", None, "[0, 1]"), ("dispersion", -5, "[0, 30]"), ("dispersion", math.inf, "[0, 30]"),
    ("dispersion", "4°", "[0, 30]"), ("blur_sigma", math.nan, "[0, 10]")])
def test_bad_knob_names_argument_and_range(name, value, expected):
    with pytest.raises(ValueError) as e:
        synthetic_section(128, **{name: value})
    assert str(e.value).startswith(f"{name}: expected a number in {expected}") and repr(value) in str(e.value)


@pytest.mark.parametrize("size", [0, 63, -100, 64.0, True, "256"])
def test_bad_size(size):
    with pytest.raises(ValueError, match="size: expected an integer of at least 64 pixels"):
        synthetic_section(size)


def test_coarse_section_warns_that_texture_is_unresolved():
    with pytest.warns(UserWarning, match="unresolved"):
        s = synthetic_section(96)
    assert s.shape == (96, 96) and np.isfinite(s.transmittance).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        synthetic_section(160)  # 188 µm per pixel: the 200 µm bundles are resolved
        synthetic_section(96, texture_contrast=0)  # nothing to resolve


def test_extras_describe_the_section():
    s = synthetic_section(200, seed=3)
    e = s.extras
    assert e["pixel_size_um"] == pytest.approx(150.0) and e["texture_contrast"] == 0.35 and e["dispersion"] == 4.0
    assert e["regions"].shape == s.shape and e["regions"].dtype == np.uint8 and e["region_names"] == SYNTHETIC_REGIONS
    assert set(np.unique(e["regions"])) <= set(SYNTHETIC_REGIONS)
    assert not (e["regions"] > 0)[~s.mask].any()  # every fibre region lies in tissue
    assert (e["regions"][e["steep"]] == 4).all() and (e["regions"][e["crossing"]] == 3).all()


def test_old_import_path_still_works():
    from genmodels.fom import synthetic_section as old
    assert old is synthetic_section
