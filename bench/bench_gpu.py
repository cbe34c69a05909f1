"""Training steps of the three models at their full presets on a CUDA GPU: step time (median of several timed
steps after warm-up, with torch.cuda.synchronize) and peak allocated memory (torch.cuda.max_memory_allocated,
reset between configurations), each with bfloat16 autocast on and off and channels-last on and off where the
config has that switch; for the 3D StyleGAN also the meta-device memory estimate beside the measured peak.

Each figure is printed last as `name: value unit (ratio R vs reference)`; the reference of every model is its
own float32, contiguous configuration, measured in this run. Without a CUDA device it says so and exits 0.
Smoke test of the same code on the CPU: `python bench/bench_gpu.py --quick --device cpu` (quick presets,
one timed step, memory unmeasured).

Batches are random tensors of the models' shapes and ranges (no data, no downloads), and only modules that
need no nibabel, nilearn, torch-fidelity, ipywidgets or papermill at import time are imported.
"""
import argparse
import dataclasses
import gc
import importlib
import statistics
import sys
import time

import torch

WARMUP, TIMED = 3, 10  # steps before timing (cuDNN autotuning, allocator), steps timed
NOT_IMPORTED = ("nibabel", "nilearn", "torch_fidelity", "ipywidgets", "papermill")  # absent on the GPU machine


def _find(name: str, module_names) -> object:
    "`name` from the first of `module_names` (genmodels submodules, imported here) that defines it."
    problems = []
    for module_name in module_names:
        try:
            module = importlib.import_module(f"genmodels.{module_name}")
        except ImportError as e:  # e.g. a module that gained an import the GPU machine lacks
            problems.append(f"genmodels.{module_name} does not import ({e})")
            continue
        if hasattr(module, name):
            return getattr(module, name)
        problems.append(f"genmodels.{module_name} has no {name!r}")
    raise ImportError(f"bench_gpu: expected {name!r} in {' or '.join('genmodels.' + m for m in module_names)}; "
                      + "; ".join(problems))


def _fields(config) -> set:
    return {f.name for f in dataclasses.fields(config)}


def _switches(config, mixed: bool, channels_last: bool):
    "The config with bfloat16 autocast and (where it has the field) channels-last set."
    changes = {"mixed_precision": mixed}
    if "channels_last" in _fields(config):
        changes["channels_last"] = channels_last
    return config.replace(**changes)


def _size(config, *names) -> int:
    "The config's edge length, under whichever of `names` it has."
    for name in names:
        if name in _fields(config):
            return getattr(config, name)
    raise AttributeError(f"{type(config).__name__}: expected a field {' or '.join(names)}, found {sorted(_fields(config))}")


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _release(device):
    "Free what the previous configuration left and start a new peak."
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure(make_state, step, batch: dict, device, warmup: int, timed: int) -> dict:
    "Median step seconds and peak allocated bytes (None on the CPU) of one configuration, state built inside."
    _release(device)
    state = make_state()
    for _ in range(warmup):
        step(state, batch)
    times = []
    for _ in range(timed):
        _sync(device)
        t0 = time.perf_counter()
        step(state, batch)
        _sync(device)
        times.append(time.perf_counter() - t0)
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    del state
    _release(device)
    return {"seconds": statistics.median(times), "peak": peak}


def gan_case(preset: str, device):
    "(config, make_state(config), step, batch) of the unconditional GAN: FOM tiles [N, 3, S, S] in [-1, 1]."
    GANConfig, make_gan_state, gan_step = (_find(n, ["gan"]) for n in ("GANConfig", "make_gan_state", "gan_step"))
    config = GANConfig.preset(preset)
    size, n = _size(config, "tile_size", "size"), config.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {"fom": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device)}
    return config, lambda cfg: make_gan_state(cfg, device), gan_step, batch


def stylegan2_case(preset: str, device):
    "StyleGAN2 on FOM tiles [N, 3, S, S] in [-1, 1] (ADA on, as in the preset)."
    StyleGAN2Config, make_state, step = (_find(n, ["stylegan2"])
                                         for n in ("StyleGAN2Config", "make_stylegan2_state", "stylegan2_step"))
    config = StyleGAN2Config.preset(preset)
    size, n = _size(config, "tile_size", "size"), config.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {"fom": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device)}
    return config, lambda cfg: make_state(cfg, device), step, batch


def pix2pix_case(preset: str, device):
    "Pix2Pix: transmittance [N, 1, S, S] in [0, 1] → FOM [N, 3, S, S] in [-1, 1] (learning rates left at the preset's)."
    Pix2PixConfig, make_state, step = (_find(n, ["pix2pix"]) for n in ("Pix2PixConfig", "make_pix2pix_state", "pix2pix_step"))
    config = Pix2PixConfig.preset(preset)
    size, n = _size(config, "tile_size", "size"), config.batch_size
    g = torch.Generator().manual_seed(0)
    batch = {"transmittance": torch.rand(n, 1, size, size, generator=g).to(device),
             "fom": (torch.rand(n, 3, size, size, generator=g) * 2 - 1).to(device)}
    return config, lambda cfg: make_state(cfg, device), step, batch


def stylegan_case(preset: str, device):
    "3D StyleGAN: volumes [N, 1, S, S, S] in [-1, 1] and label vectors from a spec fitted on a few synthetic rows."
    StyleGAN3DConfig, make_state, step = (_find(n, ["stylegan3d"])
                                          for n in ("StyleGAN3DConfig", "make_stylegan_state", "stylegan_step"))
    fit_labels, encode_labels = (_find(n, ["mri", "stylegan3d"]) for n in ("fit_labels", "encode_labels"))
    rows = {f"CASE-{i:05d}-000": {"enhancing_tumour_present": i % 2 == 0, "tumour_volume_fraction": 0.01 * (i + 1)}
            for i in range(4)}  # the segmentation proxies' names and kinds (binary, numeric)
    spec = fit_labels(rows, ["enhancing_tumour_present", "tumour_volume_fraction"])
    config = StyleGAN3DConfig.preset(preset)
    size, n = _size(config, "size"), config.batch_size
    modalities = spec["modalities"]
    ids = sorted(rows)
    labels = torch.stack([torch.from_numpy(encode_labels(spec, {"modality": modalities[i % len(modalities)],
                                                               **rows[ids[i % len(ids)]]})) for i in range(n)])
    g = torch.Generator().manual_seed(0)
    batch = {"volume": (torch.rand(n, 1, size, size, size, generator=g) * 2 - 1).to(device), "labels": labels.to(device)}
    return config, lambda cfg: make_state(cfg, spec, affine=None, device=device), step, batch


def estimate_bytes(config, batch: dict) -> int:
    "The meta-device training-memory estimate of a 3D StyleGAN config (its own batch size and precision)."
    memory_estimate = _find("memory_estimate", ["stylegan3d"])
    return memory_estimate(config, label_dim=batch["labels"].shape[1])["total_bytes"]


def run_model(name: str, case, preset: str, device, warmup: int, timed: int, estimate=None) -> list:
    "Measure every switch combination of one model; return its printed lines, the reference (float32, contiguous) first."
    config, make_state, step, batch = case(preset, device)
    has_cl = "channels_last" in _fields(config)
    combos = [(False, False), (True, False)] + ([(False, True), (True, True)] if has_cl else [])
    results = {}
    for mixed, cl in combos:
        cfg = _switches(config, mixed, cl)
        results[mixed, cl] = measure(lambda: make_state(cfg), step, batch, device, warmup, timed)
        if estimate is not None:
            results[mixed, cl]["estimate"] = estimate(cfg, batch)
    ref = results[False, False]
    shape = "x".join(str(s) for s in next(iter(batch.values())).shape)
    lines = []
    for (mixed, cl), r in results.items():
        what = f"{'bf16 autocast' if mixed else 'float32'}" + (f", {'channels-last' if cl else 'contiguous'}" if has_cl else "")
        text = f"{name} training step, {preset} preset, batch {shape}, {what}, {device.type}: {r['seconds'] * 1e3:.1f} ms/step"
        ratios = [f"ratio {r['seconds'] / ref['seconds']:.2f} step time"]
        if r["peak"] is not None:
            text += f", peak {r['peak'] / 2**30:.2f} GiB allocated"
            ratios.append(f"{r['peak'] / ref['peak']:.2f} peak memory")
        else:
            text += ", peak memory unmeasured (no CUDA)"
        if "estimate" in r:
            text += f", estimated {r['estimate'] / 2**30:.2f} GiB"
            if r["peak"] is not None:
                ratios.append(f"estimate {r['estimate'] / r['peak']:.2f} of the measured peak")
        ref_what = "float32" + (", contiguous" if has_cl else "")
        lines.append(f"{text} ({', '.join(ratios)} vs {ref_what}, {ref['seconds'] * 1e3:.1f} ms)")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="quick presets and one timed step: a smoke test")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("# no CUDA device is present (torch.cuda.is_available() is False): the GPU figures are unmeasured")
        print("GPU training steps, full presets: unmeasured (no CUDA device present)")
        return 0
    preset = "quick" if args.quick else "full"
    warmup, timed = (2, 1) if args.quick else (WARMUP, TIMED)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# {name}, torch {torch.__version__}; {preset} presets, {warmup} warm-up step(s), median of {timed} timed step(s)")
    config, make_state, step, batch = gan_case(preset, device)  # a throwaway configuration first: the first steps of a
    measure(lambda: make_state(config), step, batch, device, warmup, 1)  # process pay one-off costs (thread pools, CUDA)
    del batch
    lines = []
    lines += run_model("GAN", gan_case, preset, device, warmup, timed)
    lines += run_model("StyleGAN2", stylegan2_case, preset, device, warmup, timed)
    lines += run_model("Pix2Pix", pix2pix_case, preset, device, warmup, timed)
    lines += run_model("3D StyleGAN", stylegan_case, preset, device, warmup, timed, estimate_bytes)
    imported = [m for m in NOT_IMPORTED if m in sys.modules]
    print(f"# modules the GPU machine lacks that were imported: {', '.join(imported) or 'none'}")
    print("\n".join(lines))
    if imported:
        print(f"bench_gpu: expected none of {NOT_IMPORTED} to be imported (the GPU machine lacks them), found {imported}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
