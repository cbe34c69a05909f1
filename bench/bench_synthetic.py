"""Synthetic sections: speed at 1024², against the measurement model alone at the same size; linearity and memory at 4096².

Printed last as `name: value unit (ratio R vs reference)`, each reference measured in this run:
- synthetic_section(1024) against pli_stack + analyse_stack on 1024² maps (targets: ≤ 3 s and ratio ≤ 2.5);
- time per pixel at 4096² against that at 1024² (target: ratio ≤ 1.3, i.e. linear);
- peak resident memory of a process that makes one 4096² section, against the bytes of that section's own
  output arrays, maps and ground truth (target: ratio ≤ 3).
"""
import json
import subprocess
import sys
import time

import numpy as np

from genmodels.fom import analyse_stack, pli_stack
from genmodels.synthetic import synthetic_section

_CHILD = """
import json, resource, sys, time
import numpy as np
from genmodels.synthetic import synthetic_section
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter(); s = synthetic_section(int(sys.argv[1]), seed=0); seconds = time.perf_counter() - t0
arrays = [m for m in s.maps().values()] + [v for v in s.extras.values() if isinstance(v, np.ndarray)]
print(json.dumps(dict(seconds=seconds, peak=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, base=base,
                      section_bytes=sum(a.nbytes for a in arrays))))
"""


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def main(size=1024, big=4096):
    rng = np.random.default_rng(0)
    t = rng.uniform(0.2, 0.9, (size, size)).astype(np.float32)
    phi = rng.uniform(0, np.pi, (size, size)).astype(np.float32)
    r = rng.uniform(0, 0.9, (size, size)).astype(np.float32)
    synthetic_section(256)  # warm-up: imports and first-call costs
    model = best_of(lambda: analyse_stack(pli_stack(t, phi, r, rng=np.random.default_rng(1))))
    ours = best_of(lambda: synthetic_section(size, seed=0))
    child = json.loads(subprocess.run([sys.executable, "-c", _CHILD, str(big)], capture_output=True, text=True, check=True).stdout)
    per_pixel, per_pixel_big = ours / size**2, child["seconds"] / big**2
    print(f"# measurement model alone (18-angle stack with camera noise, harmonic fit) at {size}^2: {model:.2f} s")
    print(f"# synthetic_section {big}^2 in a fresh process: {child['seconds']:.1f} s; resident memory after imports "
          f"{child['base'] / 2**20:.0f} MiB, peak {child['peak'] / 2**20:.0f} MiB; the section's arrays {child['section_bytes'] / 2**20:.0f} MiB")
    print(f"synthetic_section {size}^2: {ours:.2f} s (ratio {ours / model:.2f} vs the measurement model alone, "
          f"{model:.2f} s; targets <= 3 s, ratio <= 2.5)")
    print(f"synthetic_section {big}^2 time per pixel: {per_pixel_big * 1e9:.0f} ns (ratio {per_pixel_big / per_pixel:.2f} vs "
          f"{size}^2, {per_pixel * 1e9:.0f} ns; target <= 1.3)")
    print(f"synthetic_section {big}^2 peak memory: {child['peak'] / 2**20:.0f} MiB (ratio {child['peak'] / child['section_bytes']:.2f} "
          f"vs the section's own arrays, {child['section_bytes'] / 2**20:.0f} MiB; target <= 3)")


if __name__ == "__main__":
    main()
