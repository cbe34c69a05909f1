"""Phantom cohorts with anatomical variety, and a BraTS-layout cohort (240×240×155, LPS, raw integers) end to end."""
import json

import nibabel as nib
import numpy as np
import pytest

import genmodels.mri as mri
from genmodels.mri import (MAX_DEFORMATION, MODALITIES, deform_tissues, exponentiate, jacobian_determinant, load_cohort,
                           load_case_cached, make_phantom_case, make_phantom_dataset, mni_tissues, save_nifti,
                           velocity_field)
from genmodels.stylegan3d import StyleGAN3DConfig, generate, load_stylegan, train_stylegan
from genmodels.volmetrics import ms_ssim_diversity, nearest_real

SIZE = 32


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    "16 phantoms at 3 mm, 32³, with their own anatomy and on the bare template: images [16, 4, 32, 32, 32] each."
    root = tmp_path_factory.mktemp("cohorts")
    out = {}
    for name, anatomy in (("anatomy", True), ("bare", False)):
        folder = make_phantom_dataset(root / name, n_cases=16, seed=0, voxel_mm=3, anatomy=anatomy)
        out[name] = np.stack([load_case_cached(p, SIZE, root / "cache")["images"] for p in sorted(folder.glob("PHANTOM-*"))])
    out["folder"] = root / "anatomy"
    return out


def flat(x):
    return x.reshape(-1, SIZE, SIZE, SIZE)


def test_heldout_phantoms_are_new_brains(cohorts):
    "Held-out phantoms' nearest training SSIM: about 0.93 on the bare template, clearly lower with own anatomies."
    medians = {}
    for name in ("anatomy", "bare"):
        images = cohorts[name]
        near = nearest_real(flat(images[12:14]), flat(images[:12]), flat(images[14:]))
        medians[name] = float(np.median(np.r_[near["fake_ssim"], near["heldout_ssim"]]))
    assert medians["bare"] > 0.9, medians
    assert medians["anatomy"] < 0.85 and medians["anatomy"] < medians["bare"] - 0.1, medians


def test_real_t1_diversity_shows_the_variety(cohorts):
    "MS-SSIM among real T1n: 0.97 on the bare template; own anatomies bring it down to about 0.9."
    bare, own = (ms_ssim_diversity(cohorts[n][:, 0])["mean"] for n in ("bare", "anatomy"))
    assert bare > 0.95 and own < 0.93 and own < bare - 0.04, (bare, own)


def test_memorisation_check_on_phantoms(cohorts):
    "Exact and lightly noised copies of training phantoms are flagged; held-out phantoms are not."
    images = cohorts["anatomy"]
    train, heldout, new = flat(images[:8]), flat(images[8:12]), flat(images[12:])
    rng = np.random.default_rng(0)
    pick = rng.permutation(len(train))[:16]
    exact = train[pick]
    noisy = np.clip(train[pick] + rng.normal(0, 0.05, exact.shape), -1, 1).astype(np.float32)
    for copies in (exact, noisy):
        result = nearest_real(copies, train, heldout)
        assert result["flagged"] and result["p_value"] < 0.005, result["summary"]
    honest = nearest_real(new, train, heldout)
    assert not honest["flagged"], honest["summary"]
    for k in range(4):  # each modality alone, as 05 reports it
        assert not nearest_real(new[k::4], train[k::4], heldout[k::4])["flagged"]


def test_phantom_metadata_not_labels(cohorts):
    folder = cohorts["folder"]
    meta = json.loads((folder / "PHANTOM-00003-000" / "PHANTOM-00003-000-phantom.json").read_text())
    assert meta["grade"] == "low" and meta["seed"] == 3 and meta["voxel_mm"] == 3
    anatomy = meta["anatomy"]
    assert 0.92 <= anatomy["head_scale"] <= 1.08 and 0.5 <= anatomy["jacobian_min"] < 1 < anatomy["jacobian_max"] <= 2
    assert {"ventricles_mm", "ventricle_ml", "rotation_deg", "shift_mm", "displacement_mm_max"} <= set(anatomy)
    assert (folder / "labels.csv").read_text().splitlines()[0] == "case_id,grade"  # anatomy never becomes a label


def test_deformation_is_diffeomorphic_and_bounded():
    rng = np.random.default_rng(1)
    for strength in (0.1, MAX_DEFORMATION):
        u = exponentiate(velocity_field((150, 180, 150), strength, rng), 6.0)
        det = jacobian_determinant(u, 6.0)
        assert det.min() >= 0.5 and det.max() <= 2.0, (strength, det.min(), det.max())
    # zero strength is the identity
    assert np.abs(exponentiate(velocity_field((60, 60, 60), 0.0, rng), 6.0)).max() == 0


@pytest.mark.parametrize("call", [
    lambda tmp: velocity_field((60, 60, 60), 0.9, np.random.default_rng(0)),
    lambda tmp: make_phantom_case(tmp, "P", deformation=0.5, voxel_mm=4),
    lambda tmp: make_phantom_dataset(tmp / "new", n_cases=2, voxel_mm=4, deformation=-0.1),
])
def test_folding_deformation_refused(tmp_path, call):
    with pytest.raises(ValueError, match=r"deformation: expected a peak strain in \[0, 0\.400\] \(the largest safe value"):
        call(tmp_path)
    assert not any(tmp_path.iterdir())  # refused before anything is written


def test_anatomy_varies_and_is_seeded():
    tissues = mni_tissues(4)
    tissues["ventricle_distance"] = mri.ventricle_distance(tissues, 4)
    a1, m1 = deform_tissues(tissues, 4, np.random.default_rng(5))
    a2, m2 = deform_tissues(tissues, 4, np.random.default_rng(5))
    b, mb = deform_tissues(tissues, 4, np.random.default_rng(6))
    assert m1 == m2 and np.array_equal(a1["wm"], a2["wm"])
    assert m1 != mb and not np.array_equal(a1["wm"], b["wm"])
    wide = mri.resize_ventricles(tissues, 4, 4.0)["ventricle_ml"]
    narrow = mri.resize_ventricles(tissues, 4, -1.5)["ventricle_ml"]
    assert wide > 1.5 * narrow


def test_cohort_too_small(tmp_path):
    folder = make_phantom_dataset(tmp_path / "p", n_cases=3, voxel_mm=4)
    with pytest.raises(ValueError, match=r"n_heldout: expected 1 … 2 held-out cases \(.* holds 3 case\(s\)"):
        load_cohort(folder, 16, tmp_path / "cache", folder / "labels.csv", ["grade"], n_heldout=3)
    with pytest.raises(ValueError, match=r"n_heldout: expected 1 … 2 .* found 0"):
        load_cohort(folder, 16, tmp_path / "cache", folder / "labels.csv", ["grade"], n_heldout=0)
    with pytest.raises(ValueError, match=r"n_cases: expected a whole number of cases ≥ 1, found 0"):
        make_phantom_dataset(tmp_path / "q", n_cases=0)


# a BraTS-Africa release as a researcher has it: 240×240×155 at 1 mm, LPS, raw integers, the real file names

BRATS_SHAPE = (240, 240, 155)
BRATS_AFFINE = np.array([[-1.0, 0, 0, 120], [0, -1.0, 0, 102], [0, 0, 1.0, -59], [0, 0, 0, 1]])  # LPS, 1 mm


@pytest.fixture(scope="module")
def brats(tmp_path_factory):
    "Three cases BraTS-SSA-0000{1,2,3}-000 in the challenge's grid, made from 3 mm phantoms."
    from nibabel.processing import resample_from_to
    root = tmp_path_factory.mktemp("brats")
    phantoms = make_phantom_dataset(root / "phantoms", n_cases=3, seed=4, voxel_mm=3)
    data = root / "BraTS-Africa"
    rows = ["case_id,grade"]
    for k, folder in enumerate(sorted(phantoms.glob("PHANTOM-*")), start=1):
        case_id = f"BraTS-SSA-{k:05d}-000"
        (data / case_id).mkdir(parents=True)
        for m in (*MODALITIES, "seg"):
            image = nib.load(folder / f"{folder.name}-{m}.nii.gz")
            moved = resample_from_to(image, (BRATS_SHAPE, BRATS_AFFINE), order=0 if m == "seg" else 1)
            values = np.asarray(moved.dataobj)
            values = values.astype(np.uint8) if m == "seg" else np.where(values > 0, values - 290, 0).astype(np.int16)
            out = nib.Nifti1Image(values, BRATS_AFFINE)
            out.set_qform(BRATS_AFFINE, code=1); out.set_sform(BRATS_AFFINE, code=1)
            nib.save(out, data / case_id / f"{case_id}-{m}.nii.gz")
        rows.append(f"{case_id},{'high' if k % 2 else 'low'}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root, data


def test_brats_layout_end_to_end(brats, tmp_path):
    root, data = brats
    first = nib.load(data / "BraTS-SSA-00001-000" / "BraTS-SSA-00001-000-t1n.nii.gz")
    assert first.shape == BRATS_SHAPE and nib.aff2axcodes(first.affine) == ("L", "P", "S")
    assert np.asarray(first.dataobj).dtype == np.int16 and np.asarray(first.dataobj).min() < 0  # raw, not [0, 1]
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    # the notebook's path: load_cohort, train_stylegan, generate, save_nifti into the input grid
    cohort = load_cohort(data, 16, tmp_path / "cache", root / "labels.csv", ["grade"], n_heldout=1, seed=0)
    assert len(cohort.train_cases) == 2 and len(cohort.train_set) == 8
    assert cohort.source_grid["shape"] == BRATS_SHAPE
    np.testing.assert_allclose(cohort.source_grid["affine"], BRATS_AFFINE)
    for case in cohort.cases:  # normalised per volume: background -1, brain in [-1, 1]
        assert case["images"].min() == -1 and case["images"].max() == 1
        assert np.allclose(np.abs(np.linalg.det(case["affine"][:3, :3])) ** (1 / 3), case["voxel_size"][0])
    cfg = StyleGAN3DConfig.preset("quick", size=16, z_dim=8, w_dim=16, g_width=4, d_width=4, max_width=16,
                                  n_steps=3, sample_every=3, checkpoint_every=3)
    run, state = train_stylegan(cfg, cohort.train_set, tmp_path / "run", device="cpu", progress=False)
    assert run.step == 3
    state = load_stylegan(tmp_path / "run" / "checkpoint.pt", device="cpu")  # the grid survives the checkpoint
    volume = generate(state, 1, {"modality": "t2f", "grade": "high"}, seed=0)[0]
    cube = save_nifti(volume, tmp_path / "run" / "t2f.nii.gz", state["affine"], [data])
    in_grid = save_nifti(volume, tmp_path / "run" / "t2f-input-grid.nii.gz", state["affine"], [data],
                         reference=state["source_grid"])
    back = nib.load(in_grid)
    assert back.shape == BRATS_SHAPE
    np.testing.assert_allclose(back.affine, first.affine)
    assert nib.aff2axcodes(back.affine) == ("L", "P", "S") and back.header.get_zooms()[:3] == (1.0, 1.0, 1.0)
    # both files put the generated volume at the same millimetres
    cube_img = nib.load(cube)
    centre = lambda img: (img.affine @ np.r_[(np.array(img.shape) - 1) / 2, 1])[:3]
    values = np.asarray(back.dataobj)
    inside = np.argwhere(values > values.min())
    mm = (back.affine @ np.r_[inside.mean(0), 1])[:3]
    assert np.linalg.norm(mm - centre(cube_img)) < 10 * cube_img.header.get_zooms()[0], (mm, centre(cube_img))
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before  # nothing written into the data folder
    with pytest.raises(ValueError, match="reference: expected a NIfTI file or a dict with 'shape' and 'affine'"):
        save_nifti(volume, tmp_path / "x.nii.gz", state["affine"], reference=[1, 2])


def test_templates_at_non_integer_voxel_size():
    t = mni_tissues(1.5)
    assert t["gm"].shape == (130, 154, 126)
    np.testing.assert_allclose(np.diag(t["affine"])[:3], [1.5] * 3)
    one = mni_tissues(1)
    # the same millimetres: voxel 0 of the 1.5 mm grid is the centre of the first 1.5 mm block
    np.testing.assert_allclose(t["affine"][:3, 3], one["affine"][:3, 3] + 0.25)
    brain_ml = lambda x, v: x["brain"].sum() * v ** 3 / 1000
    assert abs(brain_ml(t, 1.5) / brain_ml(one, 1) - 1) < 0.03
    with pytest.raises(ValueError, match="voxel_mm: expected a voxel size in mm from 1 to 16, found 0.5"):
        mni_tissues(0.5)
