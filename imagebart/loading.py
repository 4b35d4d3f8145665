"""Checkpoints in, denoisers out: the one place that reads, converts and loads them.

Every path that turns a file into weights goes through here: a training config's ``ckpt_path``
(:class:`~imagebart.models.diffusion.DenoisingTransformer`), every scale of a sampling chain
(:func:`load_denoiser`) and ``scripts/convert_checkpoint.py`` (:func:`to_native`,
:func:`first_stage_only`, :func:`native_checkpoint`).

1. :func:`read_state_dict` reads safely (:mod:`imagebart.checkpoint_io`) and renames an
   original-format (2021 x-transformers) checkpoint to our names (:func:`to_our_names`, the only
   caller of the key map in :mod:`imagebart.modules.xtransformers.legacy`);
2. :func:`network_config_for` asks for the 2021-compatible network when the weights need it
   (their norms carry biases);
3. :func:`load_weights` loads non-strictly and names the file and the config on a mismatch.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch
from omegaconf import DictConfig, OmegaConf

from imagebart.checkpoint_io import load_checkpoint
from imagebart.checkpoint_record import RECORD_KEY, CheckpointMismatch, check_hparams, make_record, verify_digest
from imagebart.modules.ema import shadow_name
from imagebart.modules.xtransformers.legacy import convert_legacy_checkpoint, is_legacy_state_dict
from imagebart.util import instantiate_from_config

logger = logging.getLogger(__name__)

NETWORK, EMA, FIRST_STAGE = "transformer.", "transformer_ema.", "first_stage_model."
LEGACY_NORM_KEY = NETWORK + "decoder.attn_layers.final_norm.bias"  # 2021 numerics: norms with bias


def _has_prefix(state_dict: Mapping[str, Any], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in state_dict)


# reading and converting


def to_our_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A denoiser state dict in our parameter and EMA names (2021 checkpoints renamed, others as they are)."""
    if is_legacy_state_dict(state_dict, prefix=NETWORK):
        return convert_legacy_checkpoint(state_dict, "xtransformer", NETWORK, EMA)
    return dict(state_dict)


def read_checkpoint(path: Union[str, Path], ignore_keys=(), strict: bool = True,
                    checkpoint: Optional[Mapping] = None) -> tuple[dict, Optional[dict]]:
    """(the weights in our names without ``ignore_keys`` entries, the checkpoint's record or None).

    The weights are checked against the record's digest: corrupt bytes are refused (``strict``)
    or reported (``strict=False``). ``checkpoint``: the file's contents when already read.
    """
    checkpoint = load_checkpoint(path) if checkpoint is None else checkpoint
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state_dict, Mapping) or not all(torch.is_tensor(v) for v in state_dict.values()):
        raise ValueError(f"checkpoint {path} holds neither a state dict nor a dict with a 'state_dict' of tensors")
    record = checkpoint.get(RECORD_KEY) if state_dict is not checkpoint else None
    _checked(verify_digest, strict, record, state_dict, path)
    state_dict = to_our_names(state_dict)
    return {k: v for k, v in state_dict.items() if not any(k.startswith(i) for i in ignore_keys)}, record


def read_state_dict(path: Union[str, Path], ignore_keys=()) -> dict[str, torch.Tensor]:
    """The checkpoint's weights in our names, without the entries starting with ``ignore_keys``."""
    return read_checkpoint(path, ignore_keys)[0]


def _checked(check, strict: bool, *args) -> None:
    """Run an integrity check; with ``strict=False`` a failure is logged and loading goes on."""
    try:
        check(*args)
    except CheckpointMismatch as err:
        if strict:
            raise
        logger.warning("%s (going on: checks switched off)", err)


def needs_legacy_network(state_dict: Mapping[str, Any]) -> bool:
    """True for weights of the 2021 numerics (read through :func:`to_our_names`)."""
    return LEGACY_NORM_KEY in state_dict


def network_config_for(transformer_config, state_dict: Mapping[str, Any], source) -> Any:
    """``transformer_config`` with ``legacy_2021: true`` when the weights come from the 2021 network."""
    if not needs_legacy_network(state_dict):
        return transformer_config
    logger.info("%s holds the original's (2021) network: building the 2021-compatible transformer", source)
    return OmegaConf.merge(transformer_config, {"params": {"legacy_2021": True}})


def ema_into_weights(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace each network weight by its EMA shadow and drop the shadows; buffers without a
    shadow (e.g. attention masks) stay as they are."""
    shadows = {k[len(EMA):]: v for k, v in state_dict.items() if k.startswith(EMA)}
    if not shadows:
        raise ValueError(f"the checkpoint has no EMA weights ({EMA}* entries)")
    out = {}
    for key, value in state_dict.items():
        if key.startswith(EMA):
            continue
        if key.startswith(NETWORK):
            value = shadows.get(shadow_name(key[len(NETWORK):]), value)
        out[key] = value
    return out


def to_native(state_dict: Mapping[str, torch.Tensor], ema_only: bool = False,
              drop_first_stage: bool = False) -> dict[str, torch.Tensor]:
    """What ``convert_checkpoint.py`` writes: our names, then the requested pruning."""
    state_dict = to_our_names(state_dict)
    if ema_only:
        state_dict = ema_into_weights(state_dict)
    if drop_first_stage:
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(FIRST_STAGE)}
    return state_dict


NATIVE_FORMAT_VERSION = 1


def first_stage_only(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VQGAN's own weights from a VQGAN training checkpoint or a denoiser checkpoint
    (drops the loss / discriminator, strips ``first_stage_model.``)."""
    if _has_prefix(state_dict, FIRST_STAGE):
        return {k[len(FIRST_STAGE):]: v for k, v in state_dict.items() if k.startswith(FIRST_STAGE)}
    parts = ("encoder.", "decoder.", "quantize.", "quant_conv.", "post_quant_conv.")
    kept = {k: v for k, v in state_dict.items() if k.startswith(parts)}
    if not kept:
        raise ValueError("the checkpoint holds no VQGAN weights (encoder.*, decoder.*, quantize.* ...)")
    return kept


def native_checkpoint(state_dict: Mapping[str, torch.Tensor], global_step=None, hparams=None, **info) -> dict:
    """The dict we save: the state dict, its record (digest and, when known, hyper-parameters) and
    a little provenance."""
    return {"state_dict": dict(state_dict), "global_step": int(global_step or 0),
            "imagebart_format": NATIVE_FORMAT_VERSION, RECORD_KEY: make_record(state_dict, hparams), **info}


# loading into a model


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source,
                 config_source: str = "the config", required=(), absent=()) -> None:
    """Load non-strictly; a shape mismatch or a missing ``required`` prefix names both files. Keys under
    ``absent`` (a first stage loaded from elsewhere) are missing by design and not reported."""
    try:
        missing, unexpected = model.load_state_dict(state_dict, strict=False)
    except (RuntimeError, ValueError) as err:  # shapes, schedule record, network layout
        raise ValueError(f"checkpoint {source} does not fit the model built from {config_source} "
                         f"(check transformer_config / first_stage_config / n_scales): {err}") from err
    lacking = [k for k in missing if k.startswith(tuple(required))]
    if lacking:
        raise ValueError(f"checkpoint {source} lacks {len(lacking)} weights of the model built from "
                         f"{config_source}, e.g. {lacking[:5]}; is it the checkpoint of that config?")
    missing = [k for k in missing if not k.startswith(tuple(absent))]
    logger.info("restored %s: %d missing and %d unexpected keys", source, len(missing), len(unexpected))
    if missing:
        logger.warning("keys missing from %s: %s", source, missing[:20])
    if unexpected:
        logger.warning("unexpected keys in %s ignored: %s", source, unexpected[:20])


def record_schedule(module, state_dict, prefix, local_metadata) -> None:
    """Checkpoints record α and ᾱ under the original's names (``alphats``, ``alphacum``)."""
    state_dict[prefix + "alphats"] = module.schedule.alphas.detach().clone()
    state_dict[prefix + "alphacum"] = module.schedule.alphas_cumprod.detach().clone()


def check_schedule_record(module, state_dict, prefix, *args) -> None:
    """The schedule comes from the config: a recorded one of another T is refused, other values are named."""
    stored = state_dict.pop(prefix + "alphacum", None)
    state_dict.pop(prefix + "alphats", None)
    sos = state_dict.get(prefix + "sos_token")
    if sos is not None:
        module.transformer.sos_token = int(sos.reshape(-1)[0])
    if stored is None:
        return
    ours = module.schedule.alphas_cumprod
    if stored.shape != ours.shape:
        raise ValueError(f"the checkpoint was trained with {stored.numel() - 1} scales, but the config has "
                         f"n_scales={module.n_scales}")
    if not torch.allclose(stored.float().to(ours.device), ours.float(), atol=1e-6):
        logger.warning("the checkpoint records another schedule (alphacum %s) than redraw_prob=%r builds (%s)",
                       [round(a, 4) for a in stored.tolist()], module.redraw_prob,
                       [round(a, 4) for a in ours.tolist()])


def _check_same_first_stage(first_stage, state_dict, source: str) -> None:
    """A scale trained on another VQGAN would read its tokens as different pictures."""
    ours = dict(first_stage.named_parameters(), **dict(first_stage.named_buffers()))
    for key in ("quantize.embedding.weight", "quantize.used"):
        theirs, mine = state_dict.get(FIRST_STAGE + key), ours.get(key)
        if theirs is None or mine is None:
            continue
        if theirs.shape != mine.shape or not torch.equal(theirs.to(mine.device, mine.dtype), mine):
            raise ValueError(f"checkpoint {source} was trained with a different first stage than scale 1 "
                             f"({FIRST_STAGE}{key} differs); all scales of a chain must share one VQGAN")


def load_denoiser(config: Mapping[str, Any], ckpt_path: Union[str, Path], first_stage=None, ema: bool = True,
                  config_source: str = "<config>", strict: bool = True):
    """Build the denoiser of a training ``config`` (with a ``model`` section) from ``ckpt_path``, for sampling.

    ``first_stage``: a VQGAN shared with the other scales of a chain (passed to the constructor,
    so no second one is built). Without it, the first stage comes from the checkpoint's
    ``first_stage_model.*`` entries, else from ``first_stage_config.params.ckpt_path``. With
    ``ema`` and EMA entries in the checkpoint, the EMA weights replace the network's once.
    A checkpoint with a record must hold the weights it was written with and the model the config
    builds (``strict=False``: report, and go on). Returns the model in eval mode, on CPU, without gradients.
    """
    source = str(ckpt_path)
    checkpoint = load_checkpoint(ckpt_path)
    state_dict, record = read_checkpoint(ckpt_path, strict=strict, checkpoint=checkpoint)
    exported_ema = isinstance(checkpoint, Mapping) and checkpoint.get("ema_only") is True  # convert --ema_only
    config = config if isinstance(config, DictConfig) else OmegaConf.create(dict(config))
    if "model" not in config:
        raise ValueError(f"{config_source} has no 'model' section")
    model_config = OmegaConf.to_container(config.model, resolve=True)  # a private copy
    params = model_config.setdefault("params", {})
    params["ckpt_path"] = None  # loaded below
    first_stage_params = params["first_stage_config"].setdefault("params", {})
    if first_stage is not None or _has_prefix(state_dict, FIRST_STAGE):
        first_stage_params["ckpt_path"] = None
    use_ema = ema and _has_prefix(state_dict, EMA)
    shadows = {k[len(EMA):] for k in state_dict if k.startswith(EMA)}
    if use_ema:
        state_dict = ema_into_weights(state_dict)
    elif exported_ema:
        (logger.info if ema else logger.warning)("%s holds EMA weights only (exported with --ema_only)%s", source,
                                                 "" if ema else ": there are no raw weights to use instead")
    elif ema:
        logger.info("%s holds no EMA weights: sampling with its network weights", source)
    state_dict = {k: v for k, v in state_dict.items() if not k.startswith(EMA)}
    params["use_ema"] = False  # the network holds the weights to sample with
    params["transformer_config"] = OmegaConf.to_container(
        OmegaConf.create(network_config_for(params["transformer_config"], state_dict, source)), resolve=True)
    if first_stage is not None:
        _check_same_first_stage(first_stage, state_dict, source)
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith(FIRST_STAGE)}
    model = instantiate_from_config(model_config, first_stage_model=first_stage)
    _checked(check_hparams, strict, record, model.hparams_record(), source, config_source,
             "list each scale's checkpoint with its own config (scale 1 first), or load with strict=False "
             "(scripts: --ignore_checkpoint_record) to use it anyway")
    elsewhere = first_stage is not None or first_stage_params.get("ckpt_path")  # shared, or its own file
    load_weights(model, state_dict, source, config_source, required=(NETWORK,) if elsewhere else (NETWORK, FIRST_STAGE),
                 absent=(FIRST_STAGE,) if elsewhere else ())
    lacking = [n for n, _ in model.transformer.named_parameters() if use_ema and shadow_name(n) not in shadows]
    if lacking:
        raise ValueError(f"checkpoint {source} lacks the EMA weights of {len(lacking)} parameters of the model "
                         f"built from {config_source}, e.g. {lacking[:5]}; pass ema=False (--no_ema) to use its "
                         "raw weights")
    model.sampling_weights = "ema" if use_ema or exported_ema else "raw"
    model.eval()
    model.requires_grad_(False)
    return model

