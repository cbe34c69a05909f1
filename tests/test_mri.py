"""genmodels.mri beyond the notebook: every bad input names the file, case or label, the preprocessing cache,
the label encoding, the case dataset and NIfTI export."""
import csv
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
import torch

import genmodels.mri as mri


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    "Two 3 mm phantom cases (high, low) in BraTS layout with labels.csv."
    return mri.make_phantom_dataset(tmp_path_factory.mktemp("phantoms"), n_cases=2, seed=1, voxel_mm=3)


def _save(path, array, affine=np.eye(4)):
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _copy_case(src, dst_parent, name, modalities=mri.MODALITIES + ("seg",)):
    dst = dst_parent / name
    dst.mkdir(parents=True)
    for m in modalities:
        shutil.copy(src / f"{src.name}-{m}.nii.gz", dst / f"{name}-{m}.nii.gz")
    return dst


# read_volume: bad files

def test_truncated_gz(tmp_path):
    noise = np.random.default_rng(0).random((16, 16, 16)).astype(np.float32) + 1
    blob = _save(tmp_path / "good.nii.gz", noise).read_bytes()
    for name, keep in (("cut.nii.gz", len(blob) // 2), ("header.nii.gz", 40)):
        (tmp_path / name).write_bytes(blob[:keep])
        with pytest.raises(mri.VolumeReadError, match=name + ".*truncated or damaged"):
            mri.read_volume(tmp_path / name)


def test_not_nifti(tmp_path):
    (tmp_path / "x.nii.gz").write_bytes(b"\x00" * 10)
    with pytest.raises(mri.VolumeReadError, match="x.nii.gz.*cannot open"):
        mri.read_volume(tmp_path / "x.nii.gz")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.nii.gz"):
        mri.read_volume(tmp_path / "absent.nii.gz")


def test_4d_needs_volume(tmp_path):
    p = _save(tmp_path / "series.nii.gz", np.arange(8 * 8 * 8 * 5, dtype=np.float32).reshape(8, 8, 8, 5) + 1)
    with pytest.raises(mri.VolumeReadError, match="series.nii.gz.*5 volumes"):
        mri.read_volume(p)
    with pytest.raises(mri.VolumeReadError, match="volume=7"):
        mri.read_volume(p, volume=7)
    data, _ = mri.read_volume(p, volume=3)
    assert data.shape == (8, 8, 8) and data[0, 0, 0] == 4


def test_4d_with_one_volume_is_3d(tmp_path):
    p = _save(tmp_path / "one.nii.gz", np.ones((8, 8, 8, 1), np.float32))
    assert mri.read_volume(p)[0].shape == (8, 8, 8)


@pytest.mark.parametrize("shape", [(8, 8), (8, 8, 1)])
def test_2d_refused(tmp_path, shape):
    p = _save(tmp_path / "flat.nii.gz", np.ones(shape, np.float32))
    with pytest.raises(mri.VolumeReadError, match="flat.nii.gz.*2D image"):
        mri.read_volume(p)


def test_nan_and_zero(tmp_path):
    a = np.ones((8, 8, 8), np.float32)
    a[0, 0, :3] = np.nan
    with pytest.raises(mri.VolumeReadError, match="nan.nii.gz.*3 NaN voxel"):
        mri.read_volume(_save(tmp_path / "nan.nii.gz", a))
    with pytest.raises(mri.VolumeReadError, match="zero.nii.gz.*only zeros"):
        mri.read_volume(_save(tmp_path / "zero.nii.gz", np.zeros((8, 8, 8), np.float32)))


def test_reorients_to_ras(tmp_path):
    a = np.random.default_rng(0).random((4, 5, 6)).astype(np.float32) + 1
    affine = np.array([[0, 0, -1, 5], [-1, 0, 0, 7], [0, 1, 0, -3], [0, 0, 0, 1.0]])
    data, ras = mri.read_volume(_save(tmp_path / "odd.nii.gz", a, affine))
    assert np.allclose(np.diag(ras)[:3], 1) and nib.aff2axcodes(ras) == ("R", "A", "S")
    # same world point, same value
    voxel_old = np.array([1, 2, 3, 1.0])
    world = affine @ voxel_old
    voxel_new = np.round(np.linalg.inv(ras) @ world).astype(int)[:3]
    assert data[tuple(voxel_new)] == a[1, 2, 3]


# read_case: bad cases

def test_missing_modality(phantoms, tmp_path):
    src = sorted(phantoms.glob("PHANTOM-*"))[0]
    case = _copy_case(src, tmp_path, "CASE-9", ("t1n", "t1c", "t2w", "seg"))
    with pytest.raises(FileNotFoundError, match="CASE-9.*missing modality t2f"):
        mri.read_case(case)


def test_missing_case_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="case NOPE"):
        mri.read_case(tmp_path / "NOPE")


def test_different_shapes(phantoms, tmp_path):
    src = sorted(phantoms.glob("PHANTOM-*"))[0]
    case = _copy_case(src, tmp_path, "CASE-8")
    _save(case / "CASE-8-t2w.nii.gz", np.ones((10, 11, 12), np.float32))
    with pytest.raises(mri.VolumeReadError, match=r"CASE-8.*t2w \(10, 11, 12\)"):
        mri.read_case(case)


def test_bad_segmentation_labels(phantoms, tmp_path):
    src = sorted(phantoms.glob("PHANTOM-*"))[0]
    case = _copy_case(src, tmp_path, "CASE-7")
    seg = nib.load(case / "CASE-7-seg.nii.gz")
    data = np.asanyarray(seg.dataobj).copy()
    data[data == 3] = 4  # BraTS 2021 numbering
    nib.save(nib.Nifti1Image(data, seg.affine), case / "CASE-7-seg.nii.gz")
    with pytest.raises(mri.VolumeReadError, match=r"CASE-7-seg.nii.gz.*found \[4\]"):
        mri.read_case(case)


# labels

def test_labels_csv(phantoms):
    case = mri.read_case(sorted(phantoms.glob("PHANTOM-*"))[0])
    assert mri.case_labels(case, phantoms / "labels.csv") == {"grade": "high"}
    assert mri.case_labels(case["seg"], phantoms / "labels.csv", case_id="PHANTOM-00001-000") == {"grade": "low"}
    with pytest.raises(FileNotFoundError, match="nothing.csv"):
        mri.case_labels(case, phantoms / "nothing.csv")


def test_labels_csv_missing_case_and_column(phantoms, tmp_path):
    case = mri.read_case(sorted(phantoms.glob("PHANTOM-*"))[0])
    other = tmp_path / "other.csv"
    with open(other, "w", newline="") as f:
        csv.writer(f).writerows([["case_id", "grade"], ["X-1", "low"]])
    with pytest.raises(KeyError, match="other.csv.*PHANTOM-00000-000"):
        mri.case_labels(case, other)
    with pytest.raises(KeyError, match=r"labels.csv.*\['idh'\].*grade"):
        mri.case_labels(case, phantoms / "labels.csv", columns=["idh"])
    bad = tmp_path / "bad.csv"
    bad.write_text("id,grade\nX-1,low\n")
    with pytest.raises(mri.VolumeReadError, match="bad.csv.*'case_id' column"):
        mri.case_labels(case, bad)


def test_proxies_never_a_grade(phantoms):
    for folder, expected in zip(sorted(phantoms.glob("PHANTOM-*")), (True, False)):
        labels = mri.case_labels(mri.read_case(folder))
        assert set(labels) == {"enhancing_tumour_present", "tumour_volume_fraction"}
        assert labels["enhancing_tumour_present"] is expected



# the label encoding

def test_fit_labels_kinds_and_bad_values():
    rows = {"A": {"grade": "high", "enhancing": True, "age": 40.0}, "B": {"grade": "low", "enhancing": 0, "age": 60.0}}
    spec = mri.fit_labels(rows, ["grade", "enhancing", "age"])
    assert [c["kind"] for c in spec["columns"]] == ["categorical", "binary", "numeric"]
    good = {"modality": "t1n", "grade": "high", "enhancing": False, "age": 60.0}
    np.testing.assert_allclose(mri.encode_labels(spec, good), [1, 0, 0, 0, 1, 0, 0, 1])  # age 60: mean 50 + 1 spread
    assert len(mri.label_combinations(spec)) == 4 * 2 * 2  # the numeric column at its mean
    with pytest.raises(ValueError, match=r"labels\['enhancing'\]: expected a yes/no value .* found 'yes'"):
        mri.encode_labels(spec, {**good, "enhancing": "yes"})
    with pytest.raises(ValueError, match=r"labels\['age'\]: expected a finite number, found nan"):
        mri.encode_labels(spec, {**good, "age": float("nan")})
    with pytest.raises(KeyError, match="expected a 'modality'"):
        mri.encode_labels(spec, {"grade": "high"})
    with pytest.raises(ValueError, match="rows: expected labels for at least one case, found none"):
        mri.fit_labels({}, ["grade"])
    assert mri.fit_labels(rows)["columns"] == [] and mri.label_names(mri.fit_labels(rows))[0] == "modality=t1n"
    assert mri.fit_labels({"A": {"age": 5.0}, "B": {"age": 5.0}}, ["age"])["columns"][0]["std"] == 1.0  # constant


# the case dataset

def test_load_cases_bad_inputs(phantoms, tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("case_id,grade\nPHANTOM-00000-000,high\n")  # the second case is missing
    with pytest.raises(KeyError, match=r"labels.csv: expected a row for case 'PHANTOM-00001-000'"):
        mri.load_cases(phantoms, 16, tmp_path / "cache", table, ["grade"])
    with pytest.raises(KeyError, match="'age'"):
        mri.load_cases(phantoms, 16, tmp_path / "cache", phantoms / "labels.csv", ["age"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="empty holds no case folders"):
        mri.load_cases(tmp_path / "empty", 16, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="absent is not a folder"):
        mri.load_cases(tmp_path / "absent", 16, tmp_path / "cache")
    with pytest.raises(PermissionError, match="data folder"):
        mri.load_cases(phantoms, 16, phantoms / "cache")


def test_split_cases():
    ids = [f"C{i}" for i in range(6)]
    train, held = mri.split_cases(ids, 2, seed=3)
    assert len(held) == 2 and sorted(train + held) == ids
    assert mri.split_cases(ids[::-1], 2, seed=3) == (train, held)  # the order given does not matter
    strata = {c: "high" if i % 2 == 0 else "low" for i, c in enumerate(ids)}
    for seed in range(5):
        assert sorted(strata[c] for c in mri.split_cases(ids, 2, seed, strata)[1]) == ["high", "low"]
    for bad in (0, 6):
        with pytest.raises(ValueError, match=rf"n_heldout: expected 1 … 5 \(there are 6 cases\), found {bad}"):
            mri.split_cases(ids, bad)


def test_volume_dataset_items_and_bad_cases(phantoms, tmp_path):
    cases, rows, columns = mri.load_cases(phantoms, 16, tmp_path / "cache", phantoms / "labels.csv", ["grade"])
    spec = mri.fit_labels(rows, columns)
    dataset = mri.VolumeDataset(cases, rows, spec)
    assert len(dataset) == 2 * 4
    item = dataset[5]  # the second case's second modality
    assert item["volume"].shape == (1, 16, 16, 16) and item["volume"].dtype == torch.float32
    np.testing.assert_array_equal(item["volume"][0].numpy(), cases[1]["images"][1])
    assert mri.label_names(spec)[int(item["labels"][:4].argmax())] == "modality=t1c"
    with pytest.raises(ValueError, match=r"case PHANTOM-00000-000: expected modality 't2f', found \['t1n'"):
        mri.VolumeDataset([{**cases[0], "modalities": cases[0]["modalities"][:3]}], rows, spec)
    small = {**cases[1], "images": cases[1]["images"][:, :8, :8, :8]}
    with pytest.raises(ValueError, match=r"one size, found sizes \[\(8, 8, 8\), \(16, 16, 16\)\]"):
        mri.VolumeDataset([cases[0], small], rows, spec)
    with pytest.raises(KeyError, match="expected a value for 'grade'"):
        mri.VolumeDataset(cases, {c: {} for c in rows}, spec)


# NIfTI export

def test_save_nifti_round_trip_and_bad_inputs(phantoms, tmp_path):
    volume = np.full((8, 8, 8), -1, np.float32)
    volume[2:6, 2:6, 2:6] = 0.5
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    path = mri.save_nifti(volume, tmp_path / "run" / "x.nii.gz", affine, [phantoms])
    back, back_affine = mri.read_volume(path)
    np.testing.assert_array_equal(back, volume)
    np.testing.assert_allclose(back_affine, affine)
    assert mri.save_nifti(volume, tmp_path / "x.nii", torch.as_tensor(affine)).is_file()  # a torch affine, plain .nii
    nan = volume.copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN or Inf voxels; nothing written"):
        mri.save_nifti(nan, tmp_path / "y.nii.gz", affine)
    with pytest.raises(ValueError, match=r"invertible 4×4 .* found shape \(4, 4\)"):
        mri.save_nifti(volume, tmp_path / "y.nii.gz", np.zeros((4, 4)))
    with pytest.raises(ValueError, match=r"invertible 4×4 .* found shape \(3, 3\)"):
        mri.save_nifti(volume, tmp_path / "y.nii.gz", np.eye(3))
    with pytest.raises(ValueError, match=r"a \.nii or \.nii\.gz file name, found 'y.png'"):
        mri.save_nifti(volume, tmp_path / "y.png", affine)
    with pytest.raises(ValueError, match=r"3D array \[X, Y, Z\], found shape \(8, 8\)"):
        mri.save_nifti(volume[0], tmp_path / "y.nii.gz", affine)
    with pytest.raises(PermissionError, match="data folder"):
        mri.save_nifti(volume, phantoms / "PHANTOM-00000-000" / "x.nii.gz", affine, [phantoms])
    assert not list(tmp_path.glob("y.*")) and not list(phantoms.rglob("x.nii*"))


# cache

def test_cache_hit_and_no_recompute(phantoms, tmp_path, monkeypatch):
    folder = sorted(phantoms.glob("PHANTOM-*"))[0]
    first = mri.load_case_cached(folder, 24, tmp_path / "cache")
    assert not first["from_cache"] and first["cache_file"].parent == (tmp_path / "cache").resolve()

    def fail(*a, **k):
        raise AssertionError("preprocess called on a cache hit")

    monkeypatch.setattr(mri, "preprocess", fail)
    second = mri.load_case_cached(folder, 24, tmp_path / "cache")
    assert second["from_cache"]
    np.testing.assert_array_equal(first["images"], second["images"])
    np.testing.assert_array_equal(first["seg"], second["seg"])
    np.testing.assert_allclose(first["affine"], second["affine"])
    assert second["modalities"] == mri.MODALITIES and second["case_id"] == folder.name


def test_cache_key_changes(phantoms, tmp_path):
    src = sorted(phantoms.glob("PHANTOM-*"))[0]
    case = _copy_case(src, tmp_path / "data", "CASE-6")
    key = mri.cache_key(case, 24)
    assert mri.cache_key(case, 32) != key  # settings
    t = case / "CASE-6-t1n.nii.gz"
    os.utime(t, ns=(t.stat().st_atime_ns, t.stat().st_mtime_ns + 10**9))
    assert mri.cache_key(case, 24) != key  # a touched source file
    out = mri.load_case_cached(case, 24, tmp_path / "cache")
    assert not out["from_cache"]
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_cache_never_in_data_folder(phantoms):
    folder = sorted(phantoms.glob("PHANTOM-*"))[0]
    before = sorted(p.name for p in phantoms.rglob("*"))
    for inside in (phantoms / "cache", folder / "cache", folder):
        with pytest.raises(PermissionError, match="data folder"):
            mri.load_case_cached(folder, 24, inside)
    assert sorted(p.name for p in phantoms.rglob("*")) == before


def test_phantom_bad_grade(tmp_path):
    with pytest.raises(ValueError, match="grade 'high' or 'low'.*'medium'"):
        mri.make_phantom_case(tmp_path, "X", grade="medium")
