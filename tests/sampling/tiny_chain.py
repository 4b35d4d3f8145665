"""Tiny denoiser configs and a tiny on-disk chain (checkpoints + YAML) for the sampling tests.

The structure follows the release configs (and shared/reference/checkpoints/*/config.yaml),
shrunk so that a whole 3-scale chain samples in well under a second on CPU:
VQGAN 16x16 -> 4x4 latents (L = 16), n_embed 64 remapped to K = 40 used codes.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from omegaconf import OmegaConf

from conftest import TINY_DDCONFIG, TINY_EMBED_DIM
from imagebart.loading import native_checkpoint
from imagebart.util import instantiate_from_config

T = 3  # n_scales
N_EMBED, K = 64, 40  # codebook, used codes after remap
SIDE = 4  # latent grid side
L = SIDE * SIDE
N_CLASSES = 10
IMAGE_SIZE = 16
CAPTIONS = ("a red circle", "a blue square on a dark background", "a large green cross", "two small triangles",
            "a yellow circle and a white square", "a cross on a light background")
CAPTION_LENGTH = 8  # max_length of the tiny text conditioner


def write_tokenizer(folder: Path) -> Path:
    """A BPE tokenizer trained on CAPTIONS (whole words), as scripts/train_tokenizer.py writes it."""
    from imagebart.modules.text import train_tokenizer

    path = Path(folder) / "tokenizer.json"
    train_tokenizer(list(CAPTIONS) * 4, vocab_size=120).save(str(path))
    return path


def tokenizer_size(path) -> int:
    from imagebart.modules.text import load_tokenizer

    return load_tokenizer(path).get_vocab_size()


def write_remap(folder: Path) -> Path:
    """A remap list: K of the N_EMBED codes (every code except a few), as the release's .npy."""
    used = np.sort(np.random.default_rng(0).choice(N_EMBED, size=K, replace=False)).astype(np.int64)
    path = Path(folder) / "used_indices.npy"
    np.save(path, used)
    return path


def first_stage_config(remap) -> dict:
    return {
        "target": "imagebart.models.vqgan.VQGANWrapper",
        "params": {
            "ckpt_path": None,
            "remap": str(remap),
            "sane_index_shape": True,
            "embed_dim": TINY_EMBED_DIM,
            "n_embed": N_EMBED,
            "ddconfig": dict(TINY_DDCONFIG),  # the training tests' tiny VQGAN: 16x16 -> 4x4
            "lossconfig": {"target": "taming.modules.losses.vqperceptual.DummyLoss"},
        },
    }


def xtransformer_config(residual: bool, conditional: bool, n_cond: int = None, vocabulary: int = None) -> dict:
    n_cond = (1 if conditional else 0) if n_cond is None else n_cond
    vocabulary = max(K, N_CLASSES) if vocabulary is None else vocabulary
    params = {"wrap_decoder": False, "dim": 32, "enc_num_tokens": vocabulary, "enc_depth": 1,
              "enc_heads": 2, "enc_attn_dim_head": 16, "enc_max_seq_len": 1 + n_cond + L,
              "dec_num_tokens": K, "dec_depth": 2, "dec_heads": 2, "dec_attn_dim_head": 16,
              "dec_max_seq_len": L, "tie_token_emb": False}
    if residual:
        params.update(scale_pos=0, n_scales=T, xt_start=1 + n_cond, xt_size=L)
        return {"target": "imagebart.modules.xtransformers.x_transformer.ResidualScaledXTransformer",
                "params": params}
    return {"target": "imagebart.modules.xtransformers.x_transformer.XTransformer", "params": params}


def gpt_config(conditional: bool, n_cond: int = None, vocabulary: int = None) -> dict:
    n_cond = (1 if conditional else 0) if n_cond is None else n_cond
    vocabulary = max(K, N_CLASSES) if vocabulary is None else vocabulary
    return {"target": "imagebart.modules.transformer.mingpt.GPT",
            "params": {"vocab_size": K, "input_vocab_size": vocabulary, "block_size": n_cond + L,
                       "n_layer": 2, "n_head": 2, "n_embd": 32}}


def denoiser_config(scale: int, kind: str, remap, conditional: bool = False, cond_drop_prob: float = 0.0,
                    tokenizer=None) -> dict:
    """``{"model": ...}`` for one scale; kind is "plain", "residual" (encoder-decoder) or "gpt".

    ``remap``: the .npy of :func:`write_remap` (K = 40 used codes). ``cond_drop_prob`` > 0: trained
    for classifier-free guidance (the null class token is N_CLASSES). ``tokenizer`` (a file from
    :func:`write_tokenizer`): text-conditional on ``caption``, CAPTION_LENGTH tokens offset by K.
    """
    n_cond, vocabulary = (CAPTION_LENGTH, K + tokenizer_size(tokenizer)) if tokenizer else (None, None)
    conditional = conditional or tokenizer is not None
    transformer = gpt_config(conditional, n_cond, vocabulary) if kind == "gpt" else \
        xtransformer_config(kind == "residual", conditional, n_cond, vocabulary)
    params = {"first_stage_key": "image", "n_scales": T, "single_scale": scale, "top_k": K,
              "alpha": 0.0 if scale == 1 else 1.0, "redraw_prob": "geometric", "use_ema": True,
              "transformer_config": transformer, "first_stage_config": first_stage_config(remap)}
    if tokenizer:
        params["conditioner_key"] = "caption"
        params["conditioner_config"] = {"target": "imagebart.modules.text.TextProvider",
                                        "params": {"tokenizer": str(tokenizer), "max_length": CAPTION_LENGTH,
                                                   "offset": K}}
    elif conditional:
        params["conditioner_config"] = {"target": "imagebart.util.ClassProvider",
                                        "params": {"key": "class_label", "n_classes": N_CLASSES}}
    if cond_drop_prob:
        params["cond_drop_prob"] = cond_drop_prob
    target = "DecoderOnlyDenoiser" if kind == "gpt" else "DenoisingXTransformer"
    return {"model": {"base_learning_rate": 0.0625, "target": f"imagebart.models.diffusion.{target}",
                      "params": params}}


@torch.no_grad()
def randomize_(module: torch.nn.Module, generator: torch.Generator, scale: float = 1.0) -> None:
    """Re-draw every parameter (as the reference fixtures do) so that logits are far from uniform."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            p.copy_(torch.randn(p.shape, generator=generator) * scale / p[0].numel() ** 0.5)
        elif "norm" in name or name.endswith("gamma") or "ln" in name:
            p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
        else:
            p.copy_(0.1 * torch.randn(p.shape, generator=generator))


def build_denoiser(config: dict, seed: int = 0, ema_offset: float = 0.0):
    """A tiny denoiser with random weights; ``ema_offset`` moves the EMA shadows off the weights."""
    torch.manual_seed(seed)
    model = instantiate_from_config(copy.deepcopy(config["model"]))
    g = torch.Generator().manual_seed(seed)
    randomize_(model.transformer, g)
    if ema_offset and model.use_ema:
        with torch.no_grad():
            for _, shadow in model.transformer_ema.named_buffers():
                if shadow.is_floating_point() and shadow.dim() > 0:
                    shadow.add_(ema_offset * torch.randn(shadow.shape, generator=g))
    return model.eval()


CHAIN_KINDS = ("residual", "plain", "gpt")  # scale 1, 2, 3


def write_chain(folder: Path, conditional: bool = False, ema_offset: float = 0.5,
                first_stage_in_checkpoints: bool = True, cond_drop_prob: float = 0.0, text: bool = False) -> Path:
    """Write checkpoints, per-scale YAML configs and a sampling config; return the latter's path.

    Every scale carries the same first stage (as when all were trained on one VQGAN), unless
    ``first_stage_in_checkpoints`` is False: then it is a separate ``vqgan.ckpt`` that the scale
    configs name in ``first_stage_config.params.ckpt_path`` (as the release configs do).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    remap = write_remap(folder)
    tokenizer = write_tokenizer(folder) if text else None
    first_stage_sd = None
    checkpoints, configs = [], []
    for scale, kind in enumerate(CHAIN_KINDS, start=1):
        config = denoiser_config(scale, kind, remap, conditional, cond_drop_prob, tokenizer)
        model = build_denoiser(config, seed=scale, ema_offset=ema_offset)
        if first_stage_sd is None:
            first_stage_sd = model.first_stage_model.state_dict()
        model.first_stage_model.load_state_dict(first_stage_sd)
        state_dict = model.state_dict()
        if not first_stage_in_checkpoints:
            state_dict = {k: v for k, v in state_dict.items() if not k.startswith("first_stage_model.")}
            config["model"]["params"]["first_stage_config"]["params"]["ckpt_path"] = str(folder / "vqgan.ckpt")
        # recorded like a trained checkpoint: digest + hyper-parameters
        torch.save(native_checkpoint(state_dict, global_step=0, hparams=model.hparams_record()),
                   folder / f"scale{scale}.ckpt")
        OmegaConf.save(OmegaConf.create(config), folder / f"scale{scale}.yaml")
        checkpoints.append(str(folder / f"scale{scale}.ckpt"))
        configs.append(str(folder / f"scale{scale}.yaml"))
    if not first_stage_in_checkpoints:
        torch.save({"state_dict": first_stage_sd}, folder / "vqgan.ckpt")
    sampling = folder / "sampling.yaml"
    OmegaConf.save(OmegaConf.create({"checkpoints": checkpoints, "configs": configs}), sampling)
    return sampling


def with_demo_validation(sampling: Path, length: int = 8) -> Path:
    """Give scale 1's config DemoScenes validation pictures (as the demo chain's config has), for the apps."""
    scale1 = sampling.parent / "scale1.yaml"
    config = OmegaConf.load(scale1)
    config.data = {"target": "main.DataModuleFromConfig", "params": {"validation": {
        "target": "imagebart.data.demo.DemoScenes",
        "params": {"split": "validation", "size": IMAGE_SIZE, "length": length}}}}
    OmegaConf.save(config, scale1)
    return sampling
