"""Sampling speed, side by side in one process: the original's loop, token by token with a KV cache,
exact speculative decoding, speculative decoding with compiled steps, and speculative decoding with
int8 weights, per scale and per image.

    python benchmarks/sampling.py                                   # the shipped demo chain, batch 1 and 16
    python benchmarks/sampling.py --sizes ffhq --batch 1 --max_tokens 32   # released FFHQ sizes (CPU: minutes)
    python benchmarks/sampling.py --sizes configs/sampling/my_chain.yaml --modes cached,speculative
    python benchmarks/sampling.py --sizes ffhq --batch 1,16,64 --modes cached,speculative,compiled --precision bf16   # a GPU

Sizes: ``demo`` is the shipped demo chain (trained weights, so acceptance rates are real); ``ffhq``
builds the released FFHQ 4-scale configs with random weights and a tiny stand-in first stage with
the same token grid and codebook (decoding is not timed). The residual-scaled scales add
log(α_t·onehot(x_t) + (1-α_t)/K) to the logits, so even random weights keep about 1-β_t of x_t
and their acceptance rates are close to a trained model's; the decoder-only last scale has no draft.
Any other value is a sampling config. Each scale samples from the x_t the previous scale drew.

Modes: ``reference`` is the original's algorithm (encoder-decoder scales re-run the decoder over the
whole prefix at every token; the decoder-only scale uses the original's cached minGPT loop, which
concatenates its cache at every step); ``cached`` is ours token by token; ``speculative`` verifies
``--gamma`` x_t drafts per decoder pass (exact); ``compiled`` is speculative with the decode steps
compiled by torch.compile (CUDA graphs on a GPU; each scale is run once untimed first, so compiling is
not timed); ``int8`` is speculative with dynamic int8 linear layers (CPU). ``bound`` is the
weight-read bound at batch 1: one matvec per weight matrix a decode step uses, in sequence, in the
faster of both weight layouts, times L; the per-step table also gives it with self-attention's q, k, v
read as the one stacked matrix the lean decoder reads (the same bytes in fewer calls). The reference loop runs on
PyTorch's row-major weights, as the original's; our modes on the layout a chain uses on the device
(column-major on the CPU, :mod:`imagebart.sampling.layout`). ``acceptance`` is the share of the drafts examined (coins tossed)
that passed. With ``--max_tokens N < L`` only the first N tokens of each scale
are timed and the scale is extrapolated (the encoder pass, timed alone, once plus a constant cost
per token; the reference loop: a + b·i per token, fitted to N/2 and N tokens); the table says so.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from tqdm import tqdm
from torch import nn

from imagebart.cli.common import resolve_device
from imagebart.config import load_config
from imagebart.modules import static_decoding
from imagebart.modules.autoregressive import DEFAULT_GAMMA, filtered_probabilities
from imagebart.modules.xtransformers.lean_decode import step_matrices, supports
from imagebart.sampling.batch import PRECISIONS, precision_context
from imagebart.sampling.chain import ImageBARTChain
from imagebart.sampling.layout import LAYOUTS, decoding_layout, set_weight_layout, weight_layout
from imagebart.sampling.quantize import quantize_network
from imagebart.util import instantiate_from_config

REPO = Path(__file__).resolve().parents[1]  # the configs are read from this clone
FFHQ = [f"configs/ffhq/4_scales/ffhq-geometric-scale{t}.yaml" for t in (1, 2, 3, 4)]
MODES = ("reference", "cached", "speculative", "compiled", "int8")
PER_STEP_ROUNDS = 3
DEFAULT_MODES = ("reference", "cached", "speculative", "int8")  # compiled: opt in (compiling takes minutes on a CPU)


# building the scales


def stand_in_first_stage(config) -> dict:
    """A tiny VQGAN with the real one's token grid (h = w) and K codes (no remap file needed)."""
    ddconfig = config["params"]["ddconfig"]
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
    first_stage = stand_in_first_stage(params["first_stage_config"])
    first_stage["params"]["n_embed"] = transformer.get("dec_num_tokens", transformer.get("vocab_size"))
    params.update(first_stage_config=first_stage, ckpt_path=None, use_ema=False)
    params.pop("conditioner_config", None)  # the FFHQ chains are unconditional
    return instantiate_from_config(model_config).eval().to(device)


def load_scales(size: str, device: torch.device) -> list:
    """The denoisers of scale 1..T."""
    if size == "ffhq":
        return [build_scale(p, device) for p in FFHQ]
    config = REPO / "configs/sampling/demo.yaml" if size == "demo" else Path(size)
    chain = ImageBARTChain.from_sampling_config(config, device=device)
    if chain.is_conditional or chain.is_text_conditional:
        raise SystemExit(f"--sizes {size}: the benchmark samples unconditional chains")
    return chain.models


# timing


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def original_gpt_loop(model, condition, steps: int, top_k, generator) -> torch.Tensor:
    """The original's cached minGPT sampler: the past concatenated anew at every step."""
    x, past, tokens = condition, [], []
    for _ in range(steps):
        logits, _, present = model.transformer.forward_with_past(x, past=torch.cat(past, dim=-2) if past else None)
        past.append(present)
        x = torch.multinomial(filtered_probabilities(logits[:, -1], 1.0, top_k), 1, generator=generator)  # (B, 1)
        tokens.append(x)
    return torch.cat(tokens, dim=1)


def run_scale(model, x_t, mode: str, steps: int, gamma: int, generator):
    """(seconds, the tokens drawn (B, steps), decoding stats) for one scale in one mode."""
    t = model.single_scale
    t_batch = torch.full((len(x_t),), t, dtype=torch.long, device=x_t.device)
    top_k, stats = model.resolve_top_k(None), {}
    sync(x_t.device)
    start = time.perf_counter()
    if mode == "reference" and not model.transformer.reads_x_t:
        tokens = original_gpt_loop(model, model.network_condition(x_t, t_batch), steps, top_k, generator)
    else:
        compile_decoding(model, mode == "compiled")
        tokens = model.sample_x_prev(x_t, t_batch, top_k=top_k, generator=generator, steps=steps, stats=stats,
                                     use_cache=mode != "reference", gamma=0 if mode in ("reference", "cached") else gamma)
        compile_decoding(model, False)
    sync(x_t.device)
    return time.perf_counter() - start, tokens, stats


def compile_decoding(model, on: bool) -> None:
    """Switch a denoiser's compiled decode steps on or off (the compiled graphs are kept)."""
    model.transformer.compile_decoding = on


def weight_read_bound(model, x_t, fused: bool = False) -> float:
    """Seconds per decode step at batch 1 if every weight matrix the step uses is read once: one matvec
    each, in sequence as a step reads them (so caches hold no more than they would), best of 10 and of
    both weight layouts (row- and column-major); leaves the model in the layout it found. ``fused``:
    self-attention's q, k and v matrices read as the one stacked matrix the lean decoder uses (the
    same bytes in fewer calls)."""
    found = weight_layout(model.transformer) or "row"
    best = float("inf")
    for layout in LAYOUTS:
        set_weight_layout(model.transformer, layout)
        best = min(best, _matvec_seconds(model, x_t, fused))
    set_weight_layout(model.transformer, found)
    return best


def _matvec_seconds(model, x_t, fused: bool = False) -> float:
    net = model.transformer
    decoder = getattr(net, "decoder", None)
    if decoder is not None and getattr(net, "lean_decoding", False) and supports(decoder):
        weights = step_matrices(decoder, fused)
    else:  # the modules one cached step calls
        used = []
        hooks = [m.register_forward_hook(lambda m, i, o: used.append(m)) for m in net.modules()
                 if isinstance(m, nn.Linear)]
        t_batch = torch.full((1,), model.single_scale, dtype=torch.long, device=x_t.device)
        condition = model.network_condition(x_t[:1], t_batch)
        try:
            _, cache = net.decode_step(condition, x_t[:1, :1])
            used.clear()
            net.decode_step(condition, x_t[:1, 1:2], cache)  # one step with the cache
        finally:
            for hook in hooks:
                hook.remove()
        weights = [(m.weight, m.bias) for m in {id(m): m for m in used}.values()]
    inputs = [torch.randn(1, w.shape[1], device=x_t.device, dtype=w.dtype) for w, _ in weights]
    best = float("inf")
    for _ in range(10):
        sync(x_t.device)
        start = time.perf_counter()
        for (weight, bias), x in zip(weights, inputs):
            F.linear(x, weight, bias)
        sync(x_t.device)
        best = min(best, time.perf_counter() - start)
    return best


def encoder_seconds(model, x_t) -> float:
    """The encoder pass a cached scale runs once (0 for the decoder-only scale), best of 2."""
    if not model.transformer.reads_x_t:
        return 0.0
    condition = model.network_condition(x_t, torch.full((len(x_t),), model.single_scale, device=x_t.device))
    best = float("inf")
    for _ in range(2):
        sync(x_t.device)
        start = time.perf_counter()
        model.transformer.encode(condition)
        sync(x_t.device)
        best = min(best, time.perf_counter() - start)
    return best


def step_seconds(model, x_t, original: bool = False, repeats: int = 8, rounds: int = 5) -> float:
    """Seconds of one cached decode step at batch 1 with half the tokens cached: each step is undone
    (the cache rewound) so all run at the same length; the fastest of ``rounds`` means of ``repeats``
    steps, as the weight-read bound takes its fastest pass. ``original``: the decoder-only scale's step
    as the original's minGPT loop takes it (its past concatenated anew)."""
    t_batch = torch.full((1,), model.single_scale, dtype=torch.long, device=x_t.device)
    condition, token = model.network_condition(x_t[:1], t_batch), x_t[:1, :1]
    net, half = model.transformer, model.tokens_per_image // 2
    if original:
        past = [net.forward_with_past(condition)[2]]
        for _ in range(half):
            past.append(net.forward_with_past(token, past=torch.cat(past, dim=-2))[2])

        def step():
            past.append(net.forward_with_past(token, past=torch.cat(past, dim=-2))[2])
            past.pop()
    else:
        _, cache = net.decode_step(condition, x_t[:1, :half])

        def step():
            net.rewind_cache(net.decode_step(condition, token, cache)[1], 1)
    for _ in range(static_decoding.COMPILE_AFTER + 1):  # warm-up (and compiling, where steps are compiled)
        step()
    best = float("inf")
    for _ in range(rounds):
        sync(x_t.device)
        start = time.perf_counter()
        for _ in range(repeats):
            step()
        sync(x_t.device)
        best = min(best, (time.perf_counter() - start) / repeats)
    return best


def per_step_seconds(model, x_t, modes, device: torch.device) -> dict:
    """One round of the per-step figures of a scale: the bounds, our cached step, the compiled one,
    and the original's minGPT step on the decoder-only scale."""
    per_step = {"bound": weight_read_bound(model, x_t), "stacked bound": weight_read_bound(model, x_t, True)}
    set_weight_layout(model.transformer, decoding_layout(device))
    per_step["cached"] = step_seconds(model, x_t)
    if "compiled" in modes:
        compile_decoding(model, True)
        per_step["compiled"] = step_seconds(model, x_t)
        compile_decoding(model, False)
    if not model.transformer.reads_x_t:
        set_weight_layout(model.transformer, "row")
        per_step["reference"] = step_seconds(model, x_t, original=True)
    return per_step


def extrapolate(t_half: float, half: int, t_full: float, steps: int, length: int, quadratic: bool,
                once: float = 0.0) -> float:
    """Seconds for all ``length`` tokens from the timings of the first ``half`` < ``steps`` tokens.
    Linear: ``once`` (the encoder pass of a cached scale) plus a constant cost per token. Quadratic
    (the reference loop re-runs everything at every token): token i costs a + b·i, fitted to the two
    timings."""
    if not quadratic:
        return once + max(t_full - once, 0.0) / steps * length
    s1, s2 = half * (half + 1) / 2, steps * (steps + 1) / 2  # sums of i over the first n tokens
    det = half * s2 - steps * s1
    a, b = ((t_half * s2 - t_full * s1) / det, (half * t_full - steps * t_half) / det) if det else (t_full / steps, 0.0)
    if a < 0 or b < 0:  # noise: fall back to a constant cost per token
        a, b = t_full / steps, 0.0
    return a * length + b * length * (length + 1) / 2


def bench(size: str, batch: int, modes, max_tokens, gamma: int, device: torch.device) -> list:
    """One row per (mode, scale) and one per (mode, whole image)."""
    scales = load_scales(size, device)
    length, n_codes = scales[0].tokens_per_image, scales[0].num_codes
    steps = length if max_tokens is None else min(max_tokens, length)
    quantized = {}
    if "int8" in modes:
        for model in scales:
            quantized[id(model)] = copy.deepcopy(model)
            quantized[id(model)].transformer = quantize_network(model.transformer)
    rows = []
    bar = tqdm(total=len(modes) * len(scales), desc=f"{size}, batch {batch}", unit="scale", file=sys.stderr, leave=False)
    for mode in modes:
        for model in scales:  # the original's loop reads PyTorch's layout, ours the one a chain uses
            set_weight_layout(model.transformer, "row" if mode == "reference" else decoding_layout(device))
        generator = torch.Generator(device=device).manual_seed(0)
        x_t = torch.randint(0, n_codes, (batch, length), generator=generator, device=device)  # x_T
        run_scale(scales[-1], x_t, "cached", 2, gamma, generator)  # warm-up
        total = 0.0
        for model in reversed(scales):  # t = T..1
            model = quantized.get(id(model), model) if mode == "int8" else model
            if mode == "compiled":  # compile outside the timing
                run_scale(model, x_t, mode, steps, gamma, torch.Generator(device=device).manual_seed(1))
            seconds, tokens, stats = run_scale(model, x_t, mode, steps, gamma, generator)
            if steps < length:
                half = max(1, steps // 2)
                quadratic = mode == "reference" and model.transformer.reads_x_t
                t_half = run_scale(model, x_t, mode, half, gamma, generator)[0] if quadratic else 0.0
                once = 0.0 if quadratic else encoder_seconds(model, x_t)
                seconds = extrapolate(t_half, half, seconds, steps, length, quadratic, once)
            total += seconds
            rows.append({"size": size, "batch": batch, "mode": mode, "scale": model.single_scale, "seconds": seconds,
                         "passes": stats.get("passes", steps), "tokens": steps,
                         "acceptance": stats["accepted"] / stats["examined"] if stats.get("examined") else None})
            x_t = torch.cat((tokens, x_t[:, steps:]), dim=1)  # x_{t-1} (the untimed tail kept from x_t)
            bar.set_postfix_str(f"{mode} scale {model.single_scale}: {seconds:.1f} s")
            bar.update()
        rows.append({"size": size, "batch": batch, "mode": mode, "scale": "image", "seconds": total})
    bar.close()
    if batch == 1:
        for model in scales:
            x_t = torch.randint(0, n_codes, (1, length), device=device)
            per_step = {}
            for _ in range(PER_STEP_ROUNDS):  # interleaved: a slow spell of a shared machine hits one round, not one figure
                for name, seconds in per_step_seconds(model, x_t, modes, device).items():
                    per_step[name] = min(per_step.get(name, float("inf")), seconds)
            rows.append({"size": size, "batch": 1, "mode": "bound", "scale": model.single_scale,
                         "seconds": per_step["bound"] * length})
            rows.append({"size": size, "batch": 1, "mode": "per step (ms)", "scale": model.single_scale,
                         "seconds": 0.0, "step_ms": {k: round(v * 1e3, 2) for k, v in per_step.items()}})
    params = sum(sum(p.numel() for p in m.transformer.parameters()) for m in scales) / 1e6
    for row in rows:
        row.update(L=length, timed=steps, params_M=round(params, 1), n_scales=len(scales))
    return rows


# report


PRECISION_NAMES = {"32": "fp32", "bf16": "bf16 autocast", "16": "fp16 autocast"}


def tokens_per_second(row) -> str:
    """Tokens drawn a second: L per image and scale (L times the scales for a whole image)."""
    if row["mode"] == "bound" or not row["seconds"]:
        return ""
    tokens = row["L"] * row["batch"] * (row["n_scales"] if row["scale"] == "image" else 1)
    return f"{tokens / row['seconds']:.0f}"


def markdown(rows, device, args) -> str:
    lines = [f"device: {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
             f"{torch.get_num_threads()} threads, {PRECISION_NAMES[args.precision]}, gamma {args.gamma}", "",
             "| size | batch | scale | mode | s (per batch) | s / image | tokens / s | decoder passes | acceptance | "
             "vs reference | vs cached |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    seconds = {(r["size"], r["batch"], r["scale"], r["mode"]): r["seconds"] for r in rows}
    steps = [r for r in rows if "step_ms" in r]
    rows = [r for r in rows if "step_ms" not in r]
    for r in rows:
        key = (r["size"], r["batch"], r["scale"])
        ratio = {m: (f"{seconds[key + (m,)] / r['seconds']:.1f}x" if key + (m,) in seconds and r["mode"] != m else "")
                 for m in ("reference", "cached")}
        scale = r["scale"] if r["scale"] == "image" else f"{r['scale']}"
        timed = f" ({r['timed']} of {r['L']} timed)" if r["timed"] < r["L"] and r["mode"] != "bound" else ""
        passes = f"{r['passes']} for {r['tokens']}" if "passes" in r else ""
        acceptance = f"{r['acceptance']:.2f}" if r.get("acceptance") is not None else ""
        lines.append(f"| {r['size']} ({r['params_M']}M) | {r['batch']} | {scale} | {r['mode']}{timed} | "
                     f"{r['seconds']:.2f} | {r['seconds'] / r['batch']:.3f} | {tokens_per_second(r)} | {passes} | "
                     f"{acceptance} | "
                     f"{ratio['reference']} | {ratio['cached']} |")
    if steps:
        lines += ["", f"One cached decode step at batch 1, half the tokens cached, the fastest of {PER_STEP_ROUNDS} interleaved "
                  "rounds of each (ms; bound: one "
                  "matvec per weight matrix, the faster weight layout; stacked: q, k, v read as one matrix, as the "
                  "lean decoder reads them; reference: the original's minGPT step):", "",
                  "| size | scale | ours | weight-read bound | ours / bound | stacked bound | ours / stacked | "
                  "compiled | reference |", "|---|---|---|---|---|---|---|---|---|"]
        for r in steps:
            ms = r["step_ms"]
            lines.append(f"| {r['size']} | {r['scale']} | {ms['cached']:.1f} | {ms['bound']:.1f} | "
                         f"{ms['cached'] / ms['bound']:.2f} | {ms['stacked bound']:.1f} | "
                         f"{ms['cached'] / ms['stacked bound']:.2f} | {ms.get('compiled', '')} | "
                         f"{ms.get('reference', '')} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="demo", help="comma-separated: demo, ffhq, or sampling config paths")
    parser.add_argument("--batch", default="1,16", help="comma-separated batch sizes")
    parser.add_argument("--modes", default=",".join(DEFAULT_MODES), help=f"comma-separated, from {list(MODES)}")
    parser.add_argument("--gamma", type=int, default=DEFAULT_GAMMA, help="drafts per pass for speculative / int8")
    parser.add_argument("--max_tokens", type=int, default=None,
                        help="time only the first N tokens of each scale and extrapolate to L")
    parser.add_argument("--device", default=None, help="None: cuda if available, else cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--precision", default="32", choices=PRECISIONS,
                        help="32, bf16 (autocast, CUDA or CPU) or 16 (fp16 autocast, CUDA only), as sample.py takes it")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",")]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--modes: unknown {unknown}; choose from {list(MODES)}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
        device = resolve_device(args.device)
    except ValueError as err:
        parser.error(f"--batch / --device: {err}")
    if args.max_tokens is not None and args.max_tokens < 2:
        parser.error("--max_tokens must be >= 2")
    if "int8" in modes and device.type != "cpu":
        parser.error("--modes int8 runs on the CPU only")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.precision != "32" and "int8" in modes:
        parser.error("--modes int8 runs in fp32 only (--precision 32)")
    rows = []
    try:
        with precision_context(device, args.precision):
            pass
    except ValueError as err:
        parser.error(str(err))
    with torch.no_grad(), precision_context(device, args.precision):
        for size in (s.strip() for s in args.sizes.split(",")):
            for batch in batches:
                rows += bench(size, batch, modes, args.max_tokens, args.gamma, device)
    print(markdown(rows, device, args))
    if args.out:
        Path(args.out).write_text(json.dumps({"settings": vars(args), "device": str(device), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
