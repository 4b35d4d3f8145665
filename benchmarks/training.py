"""Training step time, side by side in one process: images encoded by the VQGAN at every step (the
original's way), pretokenized x_0 (``scripts/pretokenize.py``), and either with ``torch.compile``.

    python benchmarks/training.py                                  # the demo scale 1, batch 32
    python benchmarks/training.py --config configs/ffhq/4_scales/ffhq-geometric-scale1.yaml --batch 2 --steps 3
    python benchmarks/training.py --modes images,tokens,tokens+compile --precision bf16   # on a GPU

The config's network and first-stage architecture are built with random weights (time does not
depend on them; no checkpoint or data is read), the inputs are random images of the config's size.
A step is forward, backward and an AdamW step (fused on CUDA) of the network. Tokens per second
count the L tokens of every example; MFU (CUDA) takes 6 · parameters · tokens as the step's work
against ``--peak_tflops``.
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

REPO = Path(__file__).resolve().parents[1]
MODES = ("images", "tokens", "images+compile", "tokens+compile")


def build(path: str, device: torch.device):
    """The config's denoiser with random weights; its first stage's architecture, no checkpoint or remap."""
    config = OmegaConf.to_container(load_config(REPO / path if not Path(path).is_absolute() else path).model,
                                    resolve=True)
    params = config["params"]
    network = params["transformer_config"]["params"]
    stage = params["first_stage_config"]["params"]
    stage.update(ckpt_path=None, remap=None, n_embed=network.get("dec_num_tokens", network.get("vocab_size")))
    params.update(ckpt_path=None, use_ema=False)
    params.pop("conditioner_config", None)
    return instantiate_from_config(config).to(device).train()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_steps(model, batch: dict, steps: int, precision: str, compile_network: bool) -> tuple:
    """(seconds per step, seconds of the first, compiling, step)."""
    device = model.device
    optimizer = torch.optim.AdamW(model.transformer.parameters(), lr=1e-4, fused=device.type == "cuda")
    if compile_network:
        model.transformer.compile()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    times = []
    for _ in range(steps + 1):
        sync(device)
        start = time.perf_counter()
        with autocast:
            loss, _ = model.shared_step(batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps, times[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", default="configs/demo/scale1.yaml", help="a training config")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after one warm-up step)")
    parser.add_argument("--modes", default="images,tokens", help=f"comma-separated, from {list(MODES)}")
    parser.add_argument("--precision", default="32", choices=("32", "bf16"))
    parser.add_argument("--device", default=None)
    parser.add_argument("--peak_tflops", type=float, default=989.0, help="the accelerator's peak (H100/H200 bf16 dense)")
    args = parser.parse_args(argv)
    modes = [m.strip() for m in args.modes.split(",")]
    if unknown := [m for m in modes if m not in MODES]:
        parser.error(f"--modes: unknown {unknown}; choose from {list(MODES)}")
    device = resolve_device(args.device)
    print(f"device: {device} ({platform.processor() or platform.machine()}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, precision {args.precision}, {args.config}, batch {args.batch}\n")
    print("| mode | s / step | first step (s) | tokens / s | MFU |\n|---|---|---|---|---|")
    base = None
    for mode in modes:
        torch.manual_seed(0)
        model = build(args.config, device)
        side = model.first_stage_model.encoder.resolution
        images = torch.rand(args.batch, side, side, 3, device=device) * 2 - 1  # (B, H, W, 3), as datasets give
        batch = {"tokens": model.encode_tokens(images.permute(0, 3, 1, 2))} if mode.startswith("tokens") else \
            {model.first_stage_key: images}
        step, first = time_steps(model, batch, args.steps, args.precision, mode.endswith("compile"))
        tokens = args.batch * model.tokens_per_image
        params = sum(p.numel() for p in model.transformer.parameters())
        mfu = f"{6 * params * tokens / step / (args.peak_tflops * 1e12):.1%}" if device.type == "cuda" else "(CPU)"
        base = base or step
        print(f"| {mode} | {step:.3f} ({base / step:.2f}x) | {first:.1f} | {tokens / step:.0f} | {mfu} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
