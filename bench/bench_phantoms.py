"""Phantom MRI cases: seconds per case at 3 mm and 1.5 mm against reading the MNI152 templates; a cohort's cost.

Printed last as `name: value unit (ratio R vs reference)`, each reference measured in this run:
- one phantom case (own anatomy, tumour, four contrasts, NIfTI files) at 3 mm and at 1.5 mm, against reading and
  block-averaging the MNI152 templates at that voxel size (mri.mni_tissues);
- 16 phantoms at 3 mm in a fresh process, templates included, against the same 16 on the bare template
  (anatomy=False, what every phantom was before it had its own anatomy; target: ratio <= 1.5).
"""
import json
import subprocess
import sys
import tempfile
import time

import genmodels.mri as mri

_CHILD = """
import sys, tempfile, time
import genmodels.mri as mri
t0 = time.perf_counter()
mri.make_phantom_dataset(tempfile.mkdtemp(), n_cases=16, seed=0, voxel_mm=3, anatomy=sys.argv[1] == "1")
print(time.perf_counter() - t0)
"""


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def per_case(voxel_mm, n, anatomy=True):
    out = tempfile.mkdtemp()
    mri.make_phantom_case(out, "WARM", voxel_mm=voxel_mm, anatomy=anatomy)  # templates cached
    return best_of(lambda: [mri.make_phantom_case(out, f"P{i}", "high" if i % 2 == 0 else "low", voxel_mm, i, anatomy)
                            for i in range(n)]) / n


def main():
    mri.mni_tissues(3)  # warm-up: nilearn's import and the first file read
    lines = []
    for voxel_mm, n in ((3, 8), (1.5, 2)):
        templates = best_of(lambda: mri.mni_tissues(voxel_mm))
        own, bare = per_case(voxel_mm, n), per_case(voxel_mm, n, anatomy=False)
        shape = mri._TISSUE_CACHE[voxel_mm]["brain"].shape
        print(f"# {voxel_mm} mm ({shape[0]}×{shape[1]}×{shape[2]}): templates {templates:.2f} s; per case {own:.3f} s "
              f"with its own anatomy, {bare:.3f} s on the bare template")
        lines.append(f"phantom case at {voxel_mm} mm: {own:.3f} s (ratio {own / templates:.2f} vs reading the MNI152 "
                     f"templates at {voxel_mm} mm, {templates:.2f} s)")
    cohort = {a: min(float(subprocess.run([sys.executable, "-c", _CHILD, a], capture_output=True, text=True,
                                          check=True).stdout) for _ in range(2)) for a in ("1", "0")}
    lines.append(f"16 phantoms at 3 mm, fresh process: {cohort['1']:.2f} s (ratio {cohort['1'] / cohort['0']:.2f} vs the "
                 f"bare template's 16, {cohort['0']:.2f} s; target <= 1.5)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
