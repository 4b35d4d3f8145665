"""Sampling speed: KV-cached vs uncached token loops, at the demo and the released FFHQ sizes.

    python benchmarks/sampling.py                          # demo and FFHQ, batch 1 and 16
    python benchmarks/sampling.py --sizes demo --batch 1,16
    python benchmarks/sampling.py --sizes ffhq --max_tokens 16   # CPU: time 16 tokens per scale

Every scale of the chain is built from its config with random weights (the numbers do not
depend on them) and a tiny stand-in first stage with the same token grid and codebook size;
decoding is not timed. Each scale samples its L tokens with ``sample_single_scale`` (encoder
once, then token by token), with ``use_cache`` on and off. With ``--max_tokens N < L`` only the
first N/2 and N tokens are timed and the full scale is extrapolated (see :func:`extrapolate`:
encoder pass as timed; cached: constant cost per token; uncached: a per-token cost linear in
the position, fitted to the two timings). The table says which rows are extrapolated.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from imagebart.cli.common import resolve_device
from imagebart.config import load_config
from imagebart.util import instantiate_from_config

REPO = Path(__file__).resolve().parents[1]  # the configs are read from this clone

SIZES = {
    "demo": [f"configs/demo/scale{t}.yaml" for t in (1, 2, 3)],
    "ffhq": [f"configs/ffhq/4_scales/ffhq-geometric-scale{t}.yaml" for t in (1, 2, 3, 4)],
}


def stand_in_first_stage(config) -> dict:
    """A tiny VQGAN with the real one's token grid (h = w) and K codes (no remap file needed)."""
    params = config["params"]
    ddconfig = params["ddconfig"]
    side = ddconfig["resolution"] // 2 ** (len(ddconfig["ch_mult"]) - 1)
    return {"target": "imagebart.models.vqgan.VQGANWrapper",
            "params": {"embed_dim": 4, "n_embed": None, "ckpt_path": None, "remap": None, "sane_index_shape": True,
                       "ddconfig": {"double_z": False, "z_channels": 4, "resolution": side, "in_channels": 3,
                                    "out_ch": 3, "ch": 32, "ch_mult": [1], "num_res_blocks": 0,
                                    "attn_resolutions": [], "dropout": 0.0}}}


def build_scale(path: str, device: torch.device):
    """The denoiser of a training config, random weights, tiny first stage, no EMA copy."""
    model_config = OmegaConf.to_container(load_config(REPO / path).model, resolve=True)  # a private copy
    params = model_config["params"]
    transformer = params["transformer_config"]["params"]
    codes = transformer.get("dec_num_tokens", transformer.get("vocab_size"))
    first_stage = stand_in_first_stage(params["first_stage_config"])
    first_stage["params"]["n_embed"] = codes
    params.update(first_stage_config=first_stage, ckpt_path=None, use_ema=False)
    params.pop("conditioner_config", None)  # the FFHQ/demo chains are unconditional
    return instantiate_from_config(model_config).eval().to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_scale(model, batch: int, steps: int, use_cache: bool, device: torch.device, precision: str) -> float:
    t = model.single_scale
    length = model.tokens_per_image
    generator = torch.Generator(device=device).manual_seed(0)
    x_t = torch.randint(0, model.num_codes, (batch, length), generator=generator, device=device)  # (B, L)
    scale = torch.full((batch, 1), t, dtype=torch.long, device=device)  # (B, 1)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    with autocast:
        sync(device)
        start = time.perf_counter()
        model.sample_single_scale(x_t, scale, None, steps=steps, generator=generator, use_cache=use_cache)
        sync(device)
    return time.perf_counter() - start


def extrapolate(encode: float, t1: float, n1: int, t2: float, n2: int, length: int, cached: bool) -> float:
    """Seconds for all ``length`` tokens from timings of the first n1 < n2 tokens.

    Cached: a constant cost per token (the growing attention over the cache is a small part at
    these sizes, and a fit on a few tokens is dominated by timing noise). Uncached: token i costs
    a + b·i (every step re-runs the whole prefix), a and b fitted to the two timings. The
    encoder pass is taken off before and added back after.
    """
    d1, d2 = max(t1 - encode, 0.0), max(t2 - encode, 0.0)
    if cached:
        return encode + d2 / n2 * length
    s1, s2 = n1 * (n1 + 1) / 2, n2 * (n2 + 1) / 2  # sums of i over the first n tokens
    det = n1 * s2 - n2 * s1
    a, b = ((d1 * s2 - d2 * s1) / det, (n1 * d2 - n2 * d1) / det) if det else (d2 / n2, 0.0)
    if b < 0 or a < 0:  # noise: fall back to a constant cost per token
        a, b = d2 / n2, 0.0
    return encode + a * length + b * length * (length + 1) / 2


def bench_size(name: str, batches, max_tokens, device, precision, repeats: int):
    models = [build_scale(p, device) for p in SIZES[name]]
    length = models[0].tokens_per_image
    steps = length if max_tokens is None else min(max_tokens, length)
    params = sum(sum(p.numel() for p in m.transformer.parameters()) for m in models) / 1e6
    rows = []
    for batch in batches:
        for model in models:  # warm-up (allocator, kernels)
            time_scale(model, batch, 2, True, device, precision)
        def timed(model, n, use_cache):
            return min(time_scale(model, batch, n, use_cache, device, precision) for _ in range(repeats))

        # the encoder pass alone (same in both modes), for the extrapolation
        encode = [timed(m, 0, True) for m in models] if steps < length else None
        totals = {}
        for use_cache in (True, False):
            total = 0.0
            for i, model in enumerate(models):
                if steps < length:
                    half = max(1, steps // 2)
                    total += extrapolate(encode[i], timed(model, half, use_cache), half,
                                         timed(model, steps, use_cache), steps, length, use_cache)
                else:
                    total += timed(model, length, use_cache)
            totals[use_cache] = total
            rows.append({"size": name, "params": params, "scales": len(models), "L": length, "batch": batch,
                         "mode": "cached" if use_cache else "uncached", "timed": steps,
                         "s_per_batch": total, "s_per_image": total / batch,
                         "tokens_per_s": batch * length * len(models) / total})
        rows[-2]["speedup"] = totals[False] / totals[True]
    return rows


def markdown(rows, device, precision) -> str:
    lines = [f"device: {device} ({platform.processor() or platform.machine()}, torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads), precision {precision}", "",
             "| size | params (M) | scales x L | batch | sampler | tokens timed per scale | s / batch (all scales) "
             "| s / image | tokens / s | cached speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        timed = f"{r['timed']} of {r['L']} (extrapolated)" if r["timed"] < r["L"] else f"all {r['L']}"
        speedup = f"{r['speedup']:.1f}x" if "speedup" in r else ""
        lines.append(f"| {r['size']} | {r['params']:.0f} | {r['scales']} x {r['L']} | {r['batch']} | {r['mode']} | "
                     f"{timed} | {r['s_per_batch']:.2f} | {r['s_per_image']:.3f} | {r['tokens_per_s']:.0f} | "
                     f"{speedup} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="demo,ffhq", help=f"comma-separated, from {sorted(SIZES)}")
    parser.add_argument("--batch", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--max_tokens", type=int, default=None,
                        help="time only the first N tokens of each scale and extrapolate to L")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--precision", default="32", choices=("32", "bf16"))
    parser.add_argument("--repeats", type=int, default=1, help="best of this many timings")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    sizes = [s.strip() for s in args.sizes.split(",")]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {unknown}; choose from {sorted(SIZES)}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        parser.error(f"--batch: expected comma-separated integers, got {args.batch!r}")
    if args.max_tokens is not None and args.max_tokens < 1:
        parser.error("--max_tokens must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(str(err))
    rows = []
    with torch.no_grad():
        for name in sizes:
            rows += bench_size(name, batches, args.max_tokens, device, args.precision, args.repeats)
    print(markdown(rows, device, args.precision))
    return 0


if __name__ == "__main__":
    sys.exit(main())
