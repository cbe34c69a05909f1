"""Pix2Pix on the CPU: training-step compute against the float32 matrix-product peak, and whole-section
inference in megapixels per second with and without overlap.

Each figure is printed last as `name: value unit (ratio R vs reference)`, references measured in this run.
"""
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_gan import _time, matmul_peak
from genmodels.synthetic import synthetic_section
from genmodels.pix2pix import Pix2PixConfig, make_pix2pix_state, pix2pix_step, predict_section

BATCH, TILE, REPEAT = 16, 64, 3


def main():
    torch.manual_seed(0)
    peak = matmul_peak()
    cfg = Pix2PixConfig.preset("full", batch_size=BATCH, tile_size=TILE, mixed_precision=False)
    state = make_pix2pix_state(cfg, "cpu")
    batch = {"transmittance": torch.rand(BATCH, 1, TILE, TILE), "fom": torch.rand(BATCH, 3, TILE, TILE) * 2 - 1}
    pix2pix_step(state, batch)
    with FlopCounterMode(display=False) as counter:
        pix2pix_step(state, batch)
    flops = counter.get_total_flops()
    seconds = min(_time(lambda: pix2pix_step(state, batch)) for _ in range(REPEAT))

    section = synthetic_section(1024, seed=0).transmittance  # 1 megapixel
    mp = section.size / 1e6
    rates = {}
    for overlap in (0.0, 0.5):
        predict_section(state, section[:256, :256], overlap=overlap)  # warm-up
        rates[overlap] = mp / min(_time(lambda: predict_section(state, section, overlap=overlap)) for _ in range(2))
    # reference: the bare forward passes over the same number of windows as plain tiling, no windowing or blending
    n_windows = (1024 // TILE) ** 2
    G = state["G"].eval()
    windows = torch.rand(BATCH, 1, TILE, TILE)
    with torch.no_grad():
        G(windows)
        bare = min(_time(lambda: [G(windows) for _ in range(n_windows // BATCH)]) for _ in range(2))
    bare_rate = mp / bare
    print(f"# float32 matrix-product peak: {peak:.1f} GFLOP/s; training step {seconds:.2f} s, {flops / 1e9:.1f} GFLOP (FlopCounterMode)")
    print(f"# bare U-Net forward over the {n_windows} windows of a 1024^2 section, batch {BATCH}: {bare_rate:.2f} MP/s")
    print(f"Pix2Pix training step, batch {BATCH}, {TILE}x{TILE}, default widths, CPU: {flops / seconds / 1e9:.1f} GFLOP/s "
          f"(ratio {flops / seconds / 1e9 / peak:.2f} vs float32 matmul peak {peak:.1f} GFLOP/s)")
    print(f"whole-section inference, no overlap, CPU: {rates[0.0]:.2f} MP/s (ratio {rates[0.0] / bare_rate:.2f} vs bare forward passes, {bare_rate:.2f} MP/s)")
    print(f"whole-section inference, 50% overlap, CPU: {rates[0.5]:.2f} MP/s (ratio {rates[0.5] / rates[0.0]:.2f} vs no overlap, {rates[0.0]:.2f} MP/s)")


if __name__ == "__main__":
    main()
