"""3D StyleGAN training step on the CPU at 32³ and 64³, batch 4: achieved GFLOP/s against the machine's float32
matrix-product peak; the step in channels-last memory against contiguous memory; the memory estimate checked against a measured step; and the estimated memory of 64³ and
128³ training at batch 4 with and without mixed precision and activation checkpointing.

Each figure is printed last as `name: value unit (ratio R vs reference)`, references measured in this run.
"""
import json
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_gan import matmul_peak  # the same peak measurement as the 2D GAN's benchmark
from genmodels.mri import fit_labels
from genmodels.stylegan3d import StyleGAN3DConfig, make_stylegan_state, memory_estimate, memory_table, stylegan_step

BATCH, REPEAT = 4, 2
SPEC = fit_labels({"a": {"grade": "high"}, "b": {"grade": "low"}}, ["grade"])  # 4 modalities + 2 grades


def batch(size: int) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"volume": torch.rand(BATCH, 1, size, size, size, generator=g) * 2 - 1, "labels": torch.eye(6)[[0, 1, 4, 5]]}


def step_figures(size: int, channels_last: bool = True) -> tuple:  # (seconds per step, FLOP per step)
    cfg = StyleGAN3DConfig.preset("quick", size=size, channels_last=channels_last)
    state = make_stylegan_state(cfg, SPEC, device="cpu")
    real = batch(size)
    stylegan_step(state, real)  # warm-up
    with FlopCounterMode(display=False) as counter:
        stylegan_step(state, real)
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter(); stylegan_step(state, real); times.append(time.perf_counter() - t0)
    return min(times), counter.get_total_flops()


def measured_step_memory(size: int) -> dict:
    "Run in a fresh process: RSS before the first step and the peak (VmHWM) after it, in bytes."
    code = f"""
import json, torch, sys
sys.path.insert(0, 'bench')
from bench_stylegan3d import batch, SPEC
from genmodels.stylegan3d import StyleGAN3DConfig, make_stylegan_state, stylegan_step
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key): return int(line.split()[1]) * 1024
state = make_stylegan_state(StyleGAN3DConfig.preset('quick', size={size}), SPEC, device='cpu')
real = batch({size})
before = status('VmRSS')
stylegan_step(state, real)
print(json.dumps(dict(before=before, peak=status('VmHWM'))))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"# float32 matrix-product peak (2048^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    results = {}
    for size in (32, 64):
        seconds, flops = step_figures(size)
        results[size] = (seconds, flops)
        print(f"# {size}^3, batch {BATCH}, quick widths: {seconds:.2f} s/step, {flops / 1e9:.1f} GFLOP per step (FlopCounterMode)")
    contiguous, _ = step_figures(32, channels_last=False)
    print(f"# 32^3 with contiguous (not channels-last) memory: {contiguous:.2f} s/step")
    size = 64
    memory = measured_step_memory(size)
    estimate = memory_estimate(StyleGAN3DConfig.preset("quick", size=size), 6, BATCH)
    grown = memory["peak"] - memory["before"]
    print(f"# {size}^3 step memory: RSS grew by {grown / 2**20:.0f} MiB during the first step (VmHWM - VmRSS before); "
          f"estimated activations {estimate['activations_bytes'] / 2**20:.0f} MiB + optimiser state "
          f"{estimate['weights_bytes'] / 2**20:.0f} MiB")
    print("# estimated training memory, full-preset widths (activations counted on the meta device):")
    for line in memory_table(StyleGAN3DConfig.preset("full"), sizes=(64, 128), batch_size=BATCH).splitlines():
        print("#", line)
    for size, (seconds, flops) in results.items():
        print(f"3D StyleGAN training step, {size}^3, batch {BATCH}, quick widths, CPU: {flops / seconds / 1e9:.1f} GFLOP/s "
              f"(ratio {flops / seconds / 1e9 / peak:.2f} vs float32 matmul peak {peak:.1f} GFLOP/s)")
    print(f"3D StyleGAN training step, 32^3, channels_last_3d memory: {results[32][0]:.2f} s/step "
          f"(ratio {results[32][0] / contiguous:.2f} vs contiguous memory, {contiguous:.2f} s/step)")
    print(f"3D StyleGAN memory estimate at {size}^3, batch {BATCH}: {estimate['activations_bytes'] / 2**20:.0f} MiB activations "
          f"(ratio {estimate['activations_bytes'] / max(grown, 1):.2f} vs the measured growth of the first step, {grown / 2**20:.0f} MiB)")
    for mixed, ckpt in ((False, False), (True, False), (False, True), (True, True)):
        m = memory_estimate(StyleGAN3DConfig.preset("full", size=128), 6, BATCH, mixed, ckpt)
        base = memory_estimate(StyleGAN3DConfig.preset("full", size=128), 6, BATCH, False, False)
        print(f"3D StyleGAN estimated memory, 128^3, batch {BATCH}, full widths, {'bfloat16' if mixed else 'float32'}, "
              f"{'with' if ckpt else 'without'} checkpointing: {m['total_bytes'] / 2**30:.2f} GiB "
              f"(ratio {m['total_bytes'] / base['total_bytes']:.2f} vs float32 without checkpointing)")


if __name__ == "__main__":
    main()
