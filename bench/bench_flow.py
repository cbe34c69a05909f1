"""Flow matching on the CPU: the training step's achieved GFLOP/s against the float32 matrix-product peak, and
sampling throughput at 8 and 32 ODE steps against the basic GAN's generation throughput.

Each figure is printed last as `name: value unit (ratio R vs reference)`, references measured in this run.
FLOPs are counted by torch's FlopCounterMode. The quick preset's widths at 32 px; batch 32 for training and
256 tiles for sampling.
"""
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_gan import matmul_peak
from genmodels.flow import FlowConfig, flow_step, make_flow_state, sample_flow
from genmodels.gan import GANConfig, make_gan_state, sample_fom

BATCH, TILES, REPEAT = 32, 256, 3


def _time(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def main():
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"# float32 matrix-product peak (2048^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    cfg = FlowConfig.preset("quick")
    batch = {"fom": torch.rand(BATCH, 3, cfg.tile_size, cfg.tile_size) * 2 - 1,
             "transmittance": torch.rand(BATCH, 1, cfg.tile_size, cfg.tile_size)}
    state = make_flow_state(cfg, "cpu")
    flow_step(state, batch)  # warm-up
    with FlopCounterMode(display=False) as counter:
        flow_step(state, batch)
    flops = counter.get_total_flops()
    gan = make_gan_state(GANConfig.preset("quick"), "cpu")
    sample_fom(gan, TILES, seed=1)
    runs = {"train": lambda: flow_step(state, batch),
            "gan": lambda: sample_fom(gan, TILES, seed=1),
            **{f"flow {k}": (lambda k=k: sample_flow(state, TILES, steps=k, solver="euler", seed=1)) for k in (8, 32)}}
    times = {label: [] for label in runs}
    for _ in range(REPEAT):  # interleaved, so that a slow spell of a shared machine hits all alike
        for label, fn in runs.items():
            times[label].append(_time(fn))
    best = {label: min(t) for label, t in times.items()}
    achieved = flops / best["train"] / 1e9
    print(f"# training step: {best['train'] * 1e3:.0f} ms, {flops / 1e9:.2f} GFLOP (batch {BATCH}, {cfg.tile_size} px)")
    print(f"Flow-matching training step, batch {BATCH}, {cfg.tile_size}x{cfg.tile_size}, quick widths, CPU: "
          f"{achieved:.1f} GFLOP/s (ratio {achieved / peak:.3f} vs float32 matmul peak {peak:.1f} GFLOP/s)")
    gan_rate = TILES / best["gan"]
    for k in (8, 32):
        rate = TILES / best[f"flow {k}"]
        print(f"Flow-matching sampling, {k} Euler steps, {TILES} tiles: {rate:.0f} tiles/s "
              f"(ratio {rate / gan_rate:.3f} vs the basic GAN's generation, {gan_rate:.0f} tiles/s)")


if __name__ == "__main__":
    main()
