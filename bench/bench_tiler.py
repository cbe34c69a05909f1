"""Tiler benchmarks: paired tiles per second against a naive per-tile loop, and peak memory on a 16384² file.

Each figure is printed last as `name: value unit (ratio R vs reference)`, the reference measured in this run.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from genmodels.fom import Section
from genmodels.tiler import FOMTiler
from genmodels.synthetic import synthetic_section

TILE, N = 64, 10_000


def section_4096() -> Section:
    "A 4096² in-memory section: a 1024² synthetic section repeated 4×4 (its tissue fraction, 16 times the area)."
    s = synthetic_section(1024, seed=0)
    return Section(transmittance=np.tile(s.transmittance, (4, 4)), fom=np.tile(s.fom, (4, 4, 1)), name="s4096")


def naive_tiles(section: Section, n: int, rng) -> list:
    "The seed's way: a Python loop over random positions with a median threshold per tile (reference)."
    t, f = section.transmittance, section.fom
    H, W = t.shape
    out = []
    while len(out) < n:
        y, x = rng.integers(0, H - TILE + 1), rng.integers(0, W - TILE + 1)
        tt, ff = t[y:y + TILE, x:x + TILE], f[y:y + TILE, x:x + TILE]
        if np.median(tt) < 0.8 and np.median(ff.max(-1)) > 0:
            out.append((tt.copy(), ff.copy()))
    return out


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def throughput():
    s = section_4096()
    t0 = time.perf_counter()
    tiler = FOMTiler(s, tile_size=TILE, min_tissue=0.5, maps=("transmittance", "fom"))
    setup = time.perf_counter() - t0
    batch = tiler.sample(N)
    assert len(batch) == N and batch.tiles["fom"].shape == (N, TILE, TILE, 3)
    ours = best_of(lambda: tiler.sample(N, seed=1))
    n_naive = 2000
    naive = best_of(lambda: naive_tiles(s, n_naive, np.random.default_rng(0)), repeat=2)
    ours_rate, naive_rate = N / ours, n_naive / naive
    print(f"# index set-up of the 4096² section (tissue integral image, split blocks): {setup:.2f} s, once per tiler")
    print(f"# naive loop: {naive_rate:,.0f} tiles/s over {n_naive} tiles; tiler: {N} tiles in {ours * 1e3:.0f} ms "
          f"(accepted {batch.stats['accepted']} of {batch.stats['candidates']} candidates)")
    return ours_rate, naive_rate


def write_big(folder: Path, size: int = 16384):
    "A 16384² transmittance and FOM as uncompressed TIFF and as chunked HDF5 (the Jülich layout), written in strips."
    import h5py
    import tifffile
    base = synthetic_section(1024, seed=1)
    reps = size // 1024
    t_tif = tifffile.memmap(folder / "t.tif", shape=(size, size), dtype=np.float32)
    f_tif = tifffile.memmap(folder / "fom.tif", shape=(size, size, 3), dtype=np.uint8, photometric="rgb")
    with h5py.File(folder / "t.h5", "w") as ht, h5py.File(folder / "fom.h5", "w") as hf:
        dt = ht.create_dataset("pyramid/00", (size, size), np.float32, chunks=(256, 256))
        df = hf.create_dataset("pyramid/00", (size, size, 3), np.uint8, chunks=(256, 256, 3))
        t_row, f_row = np.tile(base.transmittance, (1, reps)), np.tile(base.fom, (1, reps, 1))
        for r in range(reps):
            rows = slice(r * 1024, (r + 1) * 1024)
            t_tif[rows], f_tif[rows], dt[rows], df[rows] = t_row, f_row, t_row, f_row
    t_tif.flush(); f_tif.flush(); del t_tif, f_tif


# Peak resident memory from /proc/self/status (VmHWM): unlike getrusage's ru_maxrss, it is not inherited
# from the parent through fork and exec, so it is the child's own.
HWM = "def hwm_kb():\n    return int([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])\n"

CHILD = HWM + r"""
import json, sys, time
from genmodels.readers import read_section, LazyMap
from genmodels.tiler import FOMTiler
base = hwm_kb()
t0 = time.perf_counter()
s = read_section(transmittance=sys.argv[1], fom=sys.argv[2])
assert isinstance(s.transmittance, LazyMap) and isinstance(s.fom, LazyMap)
tiler = FOMTiler(s, tile_size=64)
batch = tiler.sample(int(sys.argv[3]))
print(json.dumps(dict(base_kb=base, peak_kb=hwm_kb(), seconds=time.perf_counter() - t0, n=len(batch))))
"""


TORCH = HWM + r"""
import json
import torch
print(json.dumps(dict(peak_kb=hwm_kb())))
"""


def torch_import_memory() -> float:
    "Peak RSS of a bare interpreter that imports torch, in MB: context for a training process that tiles."
    out = subprocess.run([sys.executable, "-c", TORCH], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_kb"] / 1024


def peak_memory(folder: Path, kind: str):
    t, f = (folder / "t.tif", folder / "fom.tif") if kind == "TIFF" else (folder / "t.h5", folder / "fom.h5")
    out = subprocess.run([sys.executable, "-c", CHILD, str(t), str(f), str(N)], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["n"] == N
    return r


def main():
    ours_rate, naive_rate = throughput()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        folder = Path(tmp)
        write_big(folder)
        section_mb = (16384 * 16384 * 4 + 16384 * 16384 * 3) / 2**20
        mem = {kind: peak_memory(folder, kind) for kind in ("TIFF", "HDF5")}
    for kind, r in mem.items():
        print(f"# {kind}: {r['n']} tiles in {r['seconds']:.1f} s (reading and indexing included); "
              f"interpreter with genmodels.tiler imported: {r['base_kb'] / 1024:.0f} MB")
    print(f"# for context, not in the figure: an interpreter that imports torch (this CUDA build) peaks at "
          f"{torch_import_memory():,.0f} MB of mapped libraries; the tiler does not import torch")
    print(f"paired 64x64 tiles from a 4096^2 in-memory section: {ours_rate:,.0f} tiles/s "
          f"(ratio {ours_rate / naive_rate:.1f} vs naive per-tile loop with np.median, {naive_rate:,.0f} tiles/s; targets >= 20,000 tiles/s and >= 20x)")
    for kind, r in mem.items():
        peak = r["peak_kb"] / 1024
        print(f"peak RSS sampling {N} tiles from a 16384^2 {kind} section: {peak:,.0f} MB "
              f"(ratio {peak / section_mb:.2f} vs the section in memory, {section_mb:,.0f} MB; target < 1,536 MB)")


if __name__ == "__main__":
    main()
