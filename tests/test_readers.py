"""Readers of real section files: every format, lazy reading, and every bad input named in the docs."""
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import tifffile
from PIL import Image

from genmodels.fom import Section, fom_from_angles, tissue_mask
from genmodels.readers import LazyMap, SectionReadError, read_section
from genmodels.tiler import FOMTiler

DATA = Path(__file__).resolve().parents[1] / "data" / "plimig"


@pytest.fixture(scope="module")
def maps():
    "A small section with known values: transmittance in [0, 1] and a FOM."
    rng = np.random.default_rng(0)
    h, w = 96, 80
    t = rng.uniform(0.1, 0.95, (h, w)).astype(np.float32)
    t[:, :20] = 0.9  # glass on the left
    fom = fom_from_angles(rng.uniform(0, np.pi, (h, w)), rng.uniform(-1.5, 1.5, (h, w)))
    return t, fom


def test_png_jpeg_8_and_16_bit(tmp_path, maps):
    t, fom = maps
    Image.fromarray(fom).save(tmp_path / "fom.png")
    Image.fromarray(np.dstack([fom, np.full(t.shape, 255, np.uint8)])).save(tmp_path / "fom_rgba.png")
    Image.fromarray(np.round(t * 65535).astype(np.uint16)).save(tmp_path / "t16.png")
    Image.fromarray(np.round(t * 255).astype(np.uint8)).save(tmp_path / "t8.png")
    smooth = fom_from_angles(*np.meshgrid(np.linspace(0, 3, 80), np.linspace(0, 1, 96)))
    Image.fromarray(smooth).save(tmp_path / "fom.jpg", quality=95, subsampling=0)
    s = read_section(fom=tmp_path / "fom.png", transmittance=tmp_path / "t16.png")
    assert s.fom.dtype == np.uint8 and (s.fom == fom).all()
    assert s.transmittance.dtype == np.float32 and np.abs(s.transmittance - t).max() < 1e-4
    assert (read_section(fom=tmp_path / "fom_rgba.png").fom == fom).all()
    assert np.abs(read_section(transmittance=tmp_path / "t8.png").transmittance - t).max() <= 0.5 / 255 + 1e-6
    jpeg = read_section(fom=tmp_path / "fom.jpg").fom
    assert jpeg.shape == smooth.shape and np.abs(jpeg.astype(int) - smooth).mean() < 3  # lossy, but the same picture


def test_tiff_8_16_float_rgb(tmp_path, maps):
    t, fom = maps
    tifffile.imwrite(tmp_path / "t.tif", t)
    tifffile.imwrite(tmp_path / "t16.tiff", np.round(t * 65535).astype(np.uint16))
    tifffile.imwrite(tmp_path / "fom.tif", fom, photometric="rgb")
    tifffile.imwrite(tmp_path / "fom16.tif", fom.astype(np.uint16) * 257, photometric="rgb")
    tifffile.imwrite(tmp_path / "fomf.tif", fom.astype(np.float32) / 255, photometric="rgb")
    assert (read_section(transmittance=tmp_path / "t.tif").transmittance == t).all()
    assert np.abs(read_section(transmittance=tmp_path / "t16.tiff").transmittance - t).max() < 1e-4
    for name in ("fom.tif", "fom16.tif", "fomf.tif"):
        assert (read_section(fom=tmp_path / name).fom == fom).all(), name


def test_hdf5_pyramid_levels_and_named_dataset(tmp_path, maps):
    t, fom = maps
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["pyramid/00"] = t
        f["pyramid/01"] = t[::2, ::2]
    with h5py.File(tmp_path / "many.h5", "w") as f:
        f["a"] = t
        f["b/fom"] = fom
    assert read_section(transmittance=tmp_path / "t.h5").shape == t.shape  # finest level by default
    assert read_section(transmittance=tmp_path / "t.h5", level=1).shape == t[::2, ::2].shape
    with pytest.raises(SectionReadError, match=r"pyramid level 4 not found; levels present: 00, 01"):
        read_section(transmittance=tmp_path / "t.h5", level=4)
    assert (read_section(fom=f"{tmp_path / 'many.h5'}::b/fom").fom == fom).all()
    with pytest.raises(SectionReadError, match=r"2 datasets .*name one as"):
        read_section(transmittance=tmp_path / "many.h5")
    with pytest.raises(SectionReadError, match=r"no dataset 'c'"):
        read_section(transmittance=f"{tmp_path / 'many.h5'}::c")


def test_real_hdf5_layout():
    s = read_section(transmittance=DATA / "NTransmittance.h5")  # only pyramid/06 in this file
    assert s.shape == (195, 150) and 0.6 < np.median(s.transmittance) < 0.66


def test_nifti_and_numpy(tmp_path, maps):
    t, fom = maps
    nib.save(nib.Nifti1Image(t, np.eye(4)), tmp_path / "t.nii.gz")
    nib.save(nib.Nifti1Image(t[:, :, None], np.eye(4)), tmp_path / "t3.nii")
    np.save(tmp_path / "t.npy", t)
    np.savez(tmp_path / "maps.npz", transmittance=t, fom=fom)
    assert (read_section(transmittance=tmp_path / "t.nii.gz").transmittance == t).all()
    assert (read_section(transmittance=tmp_path / "t3.nii").transmittance == t).all()
    assert (read_section(transmittance=tmp_path / "t.npy").transmittance == t).all()
    s = read_section(transmittance=f"{tmp_path / 'maps.npz'}::transmittance", fom=f"{tmp_path / 'maps.npz'}::fom")
    assert (s.fom == fom).all()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(SectionReadError, match=r"vol.nii.gz: expected a 2D NIfTI image .* found shape \(4, 4, 4\)"):
        read_section(transmittance=tmp_path / "vol.nii.gz")


def test_lazy_reading_gives_the_same_tiles(tmp_path, maps):
    t, fom = maps
    tifffile.imwrite(tmp_path / "t.tif", t)
    tifffile.imwrite(tmp_path / "fom.tif", fom, photometric="rgb")
    with h5py.File(tmp_path / "fom.h5", "w") as f:
        f.create_dataset("pyramid/00", data=fom, chunks=(32, 32, 3), compression="gzip")
    lazy = read_section(transmittance=tmp_path / "t.tif", fom=tmp_path / "fom.h5", lazy_above_mb=0, name="s")
    eager = read_section(transmittance=tmp_path / "t.tif", fom=tmp_path / "fom.tif", name="s")
    assert isinstance(lazy.transmittance, LazyMap) and isinstance(lazy.fom, LazyMap)
    assert isinstance(eager.transmittance, np.ndarray)
    a = FOMTiler(lazy, tile_size=16, seed=3).sample(20)
    b = FOMTiler(eager, tile_size=16, seed=3).sample(20)
    assert a.manifest == b.manifest
    assert (a.tiles["fom"] == b.tiles["fom"]).all() and (a.tiles["transmittance"] == b.tiles["transmittance"]).all()
    assert (np.asarray(lazy.transmittance) == t).all()


def test_missing_and_unsupported(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"transmittance file .*nothere.tif: no such file"):
        read_section(transmittance=tmp_path / "nothere.tif")
    (tmp_path / "t.bmp").write_bytes(b"BM")
    with pytest.raises(SectionReadError, match=r"t.bmp: unsupported extension '.bmp'; expected one of"):
        read_section(transmittance=tmp_path / "t.bmp")
    with pytest.raises(ValueError, match="give at least one of"):
        read_section()


def test_truncated_and_corrupt_files(tmp_path, maps):
    t, fom = maps
    Image.fromarray(fom).save(tmp_path / "fom.png")
    data = (tmp_path / "fom.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(SectionReadError, match=r"cut.png: not a readable image"):
        read_section(fom=tmp_path / "cut.png")
    tifffile.imwrite(tmp_path / "t.tif", t)
    data = (tmp_path / "t.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    with pytest.raises(SectionReadError, match=r"cut.tif: .*truncated"):
        read_section(transmittance=tmp_path / "cut.tif")
    with pytest.raises(SectionReadError, match=r"cut.tif: .*truncated"):
        read_section(transmittance=tmp_path / "cut.tif", lazy_above_mb=0)
    (tmp_path / "bad.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(SectionReadError, match=r"bad.h5: not a readable HDF5 file"):
        read_section(transmittance=tmp_path / "bad.h5")
    with h5py.File(tmp_path / "t.h5", "w") as f:
        f["pyramid/00"] = t
    data = (tmp_path / "t.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(SectionReadError, match=r"cut.h5"):
        read_section(transmittance=tmp_path / "cut.h5")
    (tmp_path / "cut.nii.gz").write_bytes(b"\x1f\x8b" + b"x" * 50)
    with pytest.raises(SectionReadError, match=r"cut.nii.gz: not a readable NIfTI"):
        read_section(transmittance=tmp_path / "cut.nii.gz")


def test_bad_values(tmp_path, maps):
    t, fom = maps
    tifffile.imwrite(tmp_path / "grey_fom.tif", t)
    with pytest.raises(SectionReadError, match=r"grey_fom.tif: a FOM must be RGB or RGBA \[H, W, 3\|4\], found shape \(96, 80\)"):
        read_section(fom=tmp_path / "grey_fom.tif")
    nan = t.copy(); nan[40, 7] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", nan)
    with pytest.raises(SectionReadError, match=r"nan.tif: transmittance contains 1 NaN or Inf value\(s\), the first at row 40, column 7"):
        read_section(transmittance=tmp_path / "nan.tif")
    # lazily read: found when the tiler scans the section for tissue, with the file named
    lazy = read_section(transmittance=tmp_path / "nan.tif", lazy_above_mb=0)
    with pytest.raises(SectionReadError, match=r"nan.tif .*NaN or Inf"):
        FOMTiler(lazy, tile_size=16)
    tifffile.imwrite(tmp_path / "raw.tif", t * 4000)
    with pytest.raises(SectionReadError, match=r"raw.tif: transmittance values must lie in \[0, 1\] .*sample / blank field.*found range"):
        read_section(transmittance=tmp_path / "raw.tif")
    tifffile.imwrite(tmp_path / "small.tif", t[:50])
    with pytest.raises(ValueError, match=r"maps of different shapes: transmittance 50×80 \(.*small.tif\), fom 96×80"):
        read_section(transmittance=tmp_path / "small.tif", fom=np.asarray(fom))
    with pytest.raises(ValueError, match=r"tile_size: 128 px is larger than section"):
        FOMTiler(read_section(transmittance=tmp_path / "small.tif"), tile_size=128)
    with pytest.raises(ValueError, match=r"tile_size: expected a positive integer, found -4"):
        FOMTiler(read_section(transmittance=tmp_path / "small.tif"), tile_size=-4)


def test_no_tissue_stops_and_reports(tmp_path):
    glass = np.full((256, 256), 0.9, np.float32)
    glass[100:110, 100:110] = 0.4  # a speck of tissue: never half a 64-px tile
    tiler = FOMTiler(Section(transmittance=glass, name="glass"), tile_size=64)
    with pytest.raises(RuntimeError, match=r"found 0 of 50 train tiles .* after \d+ candidates \(best tissue fraction seen in this split: 0\.\d+"):
        tiler.sample(50)


def test_nothing_written_into_the_data_folder(tmp_path):
    import shutil
    from genmodels.core import new_run_dir
    from genmodels.tiler import TileBrowser
    data = tmp_path / "data"
    shutil.copytree(DATA, data)
    before = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in data.iterdir()}
    s = read_section(transmittance=data / "NTransmittance.tiff", retardation=data / "Retardation.tiff")
    batch = FOMTiler(s, tile_size=32).sample(10)
    TileBrowser(s, tile_size=32, n=8)
    run = new_run_dir("tiles", root=tmp_path / "runs", data_paths=[data])
    batch.save_manifest(run / "tiles.csv", data_paths=[data])
    with pytest.raises(PermissionError, match="inside the data folder"):
        batch.save_manifest(data / "tiles.csv", data_paths=[data])
    with pytest.raises(PermissionError, match="inside the data folder"):
        new_run_dir("x", root=data / "runs", data_paths=[data / "NTransmittance.tiff"])
    after = {p.name: (p.stat().st_size, p.stat().st_mtime_ns) for p in data.iterdir()}
    assert after == before


def test_real_section_tissue_mask():
    s = read_section(transmittance=DATA / "NTransmittance.tiff", retardation=DATA / "Retardation.tiff")
    mask = tissue_mask(s.transmittance)
    assert 0.4 < mask.mean() < 0.8  # a rodent section on glass
    assert np.median(s.transmittance[~mask]) > 0.85 or np.median(s.transmittance[~mask]) < 0.05
    assert np.median(s.retardation[mask]) > 5 * np.median(s.retardation[~mask])  # tissue is birefringent, glass is not


def test_reading_and_tiling_load_no_torch_widgets_or_pyplot():
    "A tiling process stays small, and machines without ipywidgets read and tile: those load only where used."
    import os
    import subprocess
    import sys
    code = ("import sys, genmodels.readers, genmodels.tiler, genmodels.viz\n"
            "print(sorted(m for m in ('torch', 'ipywidgets', 'matplotlib.pyplot') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert out.stdout.strip() == "[]", out.stdout
