"""StyleGAN2 training step on the CPU at 32² and 64²: ms/step, achieved GFLOP/s against the machine's float32
matrix-product peak, channels-last against contiguous, and the step with lazy R1 against one without.

Each figure is printed last as `name: value unit (ratio R vs reference)`, references measured in this run.
FLOPs are counted by torch's FlopCounterMode on one step without R1 (the 15 steps of 16 that have none).
"""
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_gan import matmul_peak
from genmodels.stylegan2 import StyleGAN2Config, make_stylegan2_state, stylegan2_step

BATCH, REPEAT = 32, 3
SIZES = {32: "quick", 64: "full"}  # the preset whose widths each tile size uses


def _time(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def _state(config):
    state = make_stylegan2_state(config, "cpu")
    state["steps_done"] += 1  # off the R1 step: step 1 of every 16 has none
    return state


def main():
    torch.manual_seed(0)
    peak = matmul_peak()
    print(f"# float32 matrix-product peak (2048^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    lines = []
    for size, preset in SIZES.items():
        real = {"fom": torch.rand(BATCH, 3, size, size) * 2 - 1}
        steps, flops, states = {}, {}, {}
        for label, channels_last in (("channels-last", True), ("contiguous", False)):
            cfg = StyleGAN2Config.preset(preset, tile_size=size, batch_size=BATCH, mixed_precision=False,
                                         channels_last=channels_last)
            state = _state(cfg)
            stylegan2_step(state, real)  # warm-up
            with FlopCounterMode(display=False) as counter:
                stylegan2_step(state, real)
            flops[label] = counter.get_total_flops()
            states[label] = state

            def step(state=state):
                if int(state["steps_done"]) % state["config"].r1_interval == 0:
                    state["steps_done"] += 1  # time steps without R1 here; the R1 step is timed below
                stylegan2_step(state, real)
            steps[label] = step
        r1_state = _state(cfg)  # contiguous: the R1 step, on its own
        def r1_step():
            r1_state["steps_done"].fill_(32)  # a multiple of the R1 interval
            stylegan2_step(r1_state, real)
        r1_step()
        steps["R1 step"] = r1_step
        times = {label: [] for label in steps}
        for _ in range(REPEAT):  # interleaved, so that a slow spell of a shared machine hits all alike
            for label, fn in steps.items():
                times[label].append(_time(fn))
        best = {label: min(t) for label, t in times.items()}
        for label in ("channels-last", "contiguous"):
            print(f"# {size}x{size}, {label}: {best[label] * 1e3:.0f} ms/step, {flops[label] / 1e9:.2f} GFLOP per step")
        fastest = min(("channels-last", "contiguous"), key=best.get)
        seconds = best[fastest]
        achieved = flops[fastest] / seconds / 1e9
        widths = f"g_width {cfg.g_width}, max_width {cfg.max_width}"
        lines += [
            f"StyleGAN2 training step, batch {BATCH}, {size}x{size} ({preset} widths: {widths}), CPU, {fastest}: "
            f"{seconds * 1e3:.0f} ms/step (ratio {best['channels-last'] / best['contiguous']:.2f} channels-last vs "
            f"contiguous, {best['contiguous'] * 1e3:.0f} ms)",
            f"StyleGAN2 training step achieved compute, {size}x{size}: {achieved:.1f} GFLOP/s "
            f"(ratio {achieved / peak:.3f} vs float32 matmul peak {peak:.1f} GFLOP/s)",
            f"StyleGAN2 step with lazy R1, {size}x{size}: {best['R1 step'] * 1e3:.0f} ms "
            f"(ratio {best['R1 step'] / best['contiguous']:.2f} vs the step without R1; paid once every "
            f"{cfg.r1_interval} steps)",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
