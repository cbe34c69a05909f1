"""Synthetic section speed: synthetic_section(1024) against the measurement model alone at the same size.

Printed last as `name: value unit (ratio R vs reference)`, the reference measured in this run.
"""
import time

import numpy as np

from genmodels.fom import analyse_stack, pli_stack, synthetic_section


def best_of(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter(); fn(); times.append(time.perf_counter() - t0)
    return min(times)


def main(size=1024):
    rng = np.random.default_rng(0)
    t = rng.uniform(0.2, 0.9, (size, size)).astype(np.float32)
    phi = rng.uniform(0, np.pi, (size, size)).astype(np.float32)
    r = rng.uniform(0, 0.9, (size, size)).astype(np.float32)
    synthetic_section(256)  # warm-up: imports and first-call costs
    model = best_of(lambda: analyse_stack(pli_stack(t, phi, r, rng=np.random.default_rng(1))))
    ours = best_of(lambda: synthetic_section(size, seed=0))
    print(f"# measurement model alone (18-angle stack with camera noise, harmonic fit) at {size}^2: {model:.2f} s")
    print(f"synthetic_section {size}^2: {ours:.2f} s (ratio {ours / model:.2f} vs the measurement model alone, "
          f"{model:.2f} s; target <= 3 s)")


if __name__ == "__main__":
    main()
