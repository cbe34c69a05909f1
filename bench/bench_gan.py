"""GAN training step on the CPU: steps/s, achieved GFLOP/s against the machine's float32 matrix-product peak,
and the kit's step against a plain float32 reference step of the same networks.

Each figure is printed last as `name: value unit (ratio R vs reference)`, references measured in this run.
"""
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from genmodels.gan import GANConfig, gan_step, make_gan_state

BATCH, TILE, REPEAT = 64, 64, 3


def matmul_peak(n: int = 2048, repeat: int = 5) -> float:
    "float32 matrix-product GFLOP/s of this machine, all threads, best of `repeat`."
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = min(_time(lambda: torch.mm(a, b)) for _ in range(repeat))
    return 2 * n**3 / best / 1e9


def _time(fn) -> float:
    t0 = time.perf_counter(); fn(); return time.perf_counter() - t0


def plain_reference_step(G, D, opt_G, opt_D, real, z_dim):
    "The textbook DCGAN step, float32, contiguous tensors, no EMA or statistics: the reference."
    z = torch.randn(len(real), z_dim)
    fake = G(z)
    opt_D.zero_grad()
    real_out, fake_out = D(real), D(fake.detach())
    loss_D = F.binary_cross_entropy_with_logits(real_out, torch.ones_like(real_out)) + \
        F.binary_cross_entropy_with_logits(fake_out, torch.zeros_like(fake_out))
    loss_D.backward(); opt_D.step()
    opt_G.zero_grad()
    out = D(fake)
    F.binary_cross_entropy_with_logits(out, torch.ones_like(out)).backward(); opt_G.step()


def main():
    torch.manual_seed(0)
    peak = matmul_peak()
    real = {"fom": torch.rand(BATCH, 3, TILE, TILE) * 2 - 1}
    steps, flops = {}, {}
    for label, channels_last in (("kit step, channels-last", True), ("kit step, contiguous", False)):
        cfg = GANConfig.preset("full", batch_size=BATCH, tile_size=TILE, mixed_precision=False, channels_last=channels_last)
        state = make_gan_state(cfg, "cpu")
        gan_step(state, real)  # warm-up
        with FlopCounterMode(display=False) as counter:
            gan_step(state, real)
        flops[label] = counter.get_total_flops()
        steps[label] = lambda state=state: gan_step(state, real)
    cfg = GANConfig.preset("full", batch_size=BATCH, tile_size=TILE, mixed_precision=False, channels_last=False)
    ref = make_gan_state(cfg, "cpu")
    args = (ref["G"], ref["D"], torch.optim.Adam(ref["G"].parameters(), 2e-4, betas=(0.5, 0.999)),
            torch.optim.Adam(ref["D"].parameters(), 2e-4, betas=(0.5, 0.999)), real["fom"], cfg.z_dim)
    plain_reference_step(*args)
    steps["reference"] = lambda: plain_reference_step(*args)
    times = {label: [] for label in steps}
    for _ in range(REPEAT):  # interleaved, so that a slow spell of a shared machine hits all three alike
        for label, fn in steps.items():
            times[label].append(_time(fn))
    ref_seconds = min(times.pop("reference"))
    results = {label: (min(t), flops[label]) for label, t in times.items()}
    print(f"# float32 matrix-product peak (2048^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    for label, (seconds, flops) in results.items():
        print(f"# {label}: {seconds:.2f} s/step, {flops / 1e9:.1f} GFLOP per step (torch FlopCounterMode)")
    print(f"# plain float32 reference step: {ref_seconds:.2f} s/step")
    best_label = min(results, key=lambda k: results[k][0])
    seconds, flops = results[best_label]
    print(f"GAN training step, batch {BATCH}, {TILE}x{TILE}, default widths, CPU ({best_label}): {1 / seconds:.3f} steps/s "
          f"(ratio {seconds / ref_seconds:.2f} of the plain float32 reference step time, {ref_seconds:.2f} s; target <= 1)")
    print(f"GAN training step achieved compute: {flops / seconds / 1e9:.1f} GFLOP/s "
          f"(ratio {flops / seconds / 1e9 / peak:.2f} vs float32 matmul peak {peak:.1f} GFLOP/s; target >= 0.3)")


if __name__ == "__main__":
    main()
