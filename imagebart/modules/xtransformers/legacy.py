"""Official (2021) checkpoints -> our parameter names.

The release trained its encoder-decoders with a 2021 copy of x-transformers whose module
tree differs from x-transformers 2.x. Our ``XTransformer(legacy_2021=True)`` has the 2021
numerics with the 2.x module tree, so loading needs only key renames, listed in
:data:`XTRANSFORMER_KEY_MAP` with the reason for each. No tensor is changed: the one numeric
difference that could be folded into weights (the 2.x positional-embedding scale dim**-0.5)
is switched off in the module instead, so official logits are reproduced exactly.

minGPT checkpoints (``model_kind="gpt"``) need nothing: our GPT keeps minGPT's names.
EMA shadows (``transformer_ema.*``) are named like the parameter with dots removed; since our
names differ, :func:`convert_legacy_ema_state_dict` maps them through the 2021 names.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch

from imagebart.modules.ema import shadow_name

MODEL_KINDS = ("xtransformer", "gpt")

# (2021 pattern, our replacement, reason); applied in order, first match wins
XTRANSFORMER_KEY_MAP: tuple[tuple[str, str, str], ...] = (
    (r"^(encoder|decoder)\.token_emb\.weight$", r"\1.token_emb.emb.weight",
     "2.x wraps the token nn.Embedding in TokenEmbedding (attribute .emb)"),
    (r"^(encoder|decoder)\.pos_emb\.emb\.weight$", r"\1.pos_emb.emb.weight",
     "same name; the 2021 unscaled addition is kept by legacy_2021 (pos_emb.scale = 1)"),
    (r"^(encoder|decoder)\.attn_layers\.layers\.(\d+)\.0\.(weight|bias)$",
     r"\1.attn_layers.layers.\2.0.0.\3",
     "2.x holds (pre-norm, post-branch norm, post-main norm) per layer; the 2021 "
     "pre-norm nn.LayerNorm becomes slot 0 (legacy_2021 puts an nn.LayerNorm there, with bias)"),
    (r"^(encoder|decoder)\.attn_layers\.layers\.(\d+)\.1\.net\.0\.0\.(weight|bias)$",
     r"\1.attn_layers.layers.\2.1.ff.0.0.\3",
     "feed-forward Sequential renamed net -> ff; first Linear (+GELU) same layout"),
    (r"^(encoder|decoder)\.attn_layers\.layers\.(\d+)\.1\.net\.2\.(weight|bias)$",
     r"\1.attn_layers.layers.\2.1.ff.2.\3",
     "feed-forward Sequential renamed net -> ff; output Linear at the same index"),
    (r"^(encoder|decoder)\.attn_layers\.layers\.(\d+)\.1\.(to_q|to_k|to_v)\.weight$",
     r"\1.attn_layers.layers.\2.1.\3.weight",
     "same name and layout (bias-free q/k/v projections in both)"),
    (r"^(encoder|decoder)\.attn_layers\.layers\.(\d+)\.1\.to_out\.(weight|bias)$",
     r"\1.attn_layers.layers.\2.1.to_out.\3",
     "same name; 2.x has no bias here, legacy_2021 swaps in a Linear with bias"),
    (r"^(encoder|decoder)\.norm\.(weight|bias)$", r"\1.attn_layers.final_norm.\2",
     "2.x moved the final norm into the attention layers; legacy_2021 makes it an "
     "nn.LayerNorm with bias"),
    (r"^decoder\.to_logits\.(weight|bias)$", r"decoder.to_logits.\1",
     "same name; legacy_2021 gives the decoder head a bias as in 2021"),
    (r"^encoder\.to_logits\.(weight|bias)$", "",
     "dropped: the 2021 encoder had a logits layer that was never used (its output "
     "embeddings feed the decoder); ours has none"),
    (r"^log_scalors$", "log_scalors",
     "ResidualScaledXTransformer's per-scale scalars, same name"),
)

_COMPILED = tuple((re.compile(p), r, why) for p, r, why in XTRANSFORMER_KEY_MAP)


def _check_kind(model_kind: str) -> None:
    if model_kind not in MODEL_KINDS:
        raise ValueError(f"model_kind must be one of {MODEL_KINDS}, got {model_kind!r}")


def is_legacy_state_dict(keys: Iterable[str], prefix: str = "") -> bool:
    """True if the transformer keys (those under ``prefix``, e.g. ``"transformer."`` for a
    whole denoiser checkpoint) are in the 2021 x-transformers format, i.e. the network must be
    built with ``legacy_2021=True``.

    The 2021 token embedding is ``<encoder|decoder>.token_emb.weight`` and its final norm
    ``<encoder|decoder>.norm.*``; x-transformers 2.x has neither. minGPT keys never match.
    """
    pattern = re.compile(r"^(encoder|decoder)\.(token_emb\.weight|norm\.weight)$")
    return any(pattern.match(k[len(prefix):]) for k in keys if k.startswith(prefix))


def convert_legacy_key(key: str, model_kind: str = "xtransformer") -> str | None:
    """Our name for one 2021 parameter name; ``None`` for keys we drop."""
    _check_kind(model_kind)
    if model_kind == "gpt":
        return key  # minGPT names are kept verbatim
    for pattern, replacement, _ in _COMPILED:
        if pattern.match(key):
            new = pattern.sub(replacement, key)
            return new or None
    raise ValueError(
        f"no mapping for the 2021 x-transformers key {key!r}; only the options of the "
        "released configs are supported in legacy mode"
    )


def convert_legacy_state_dict(state_dict: Mapping[str, torch.Tensor],
                              model_kind: str = "xtransformer") -> dict[str, torch.Tensor]:
    """A 2021-format transformer state dict (keys without the ``transformer.`` prefix) in our
    names, for a network built with ``legacy_2021=True``. Tensors are passed through unchanged.
    """
    out = {}
    for key, value in state_dict.items():
        new = convert_legacy_key(key, model_kind)
        if new is not None:
            out[new] = value
    return out


def convert_legacy_ema_state_dict(ema_state_dict: Mapping[str, torch.Tensor],
                                  legacy_param_names: Iterable[str],
                                  model_kind: str = "xtransformer") -> dict[str, torch.Tensor]:
    """Rename 2021 EMA shadows (``encodertoken_embweight`` …) to our shadow names.

    ``ema_state_dict``: the ``transformer_ema.*`` entries with that prefix removed.
    ``legacy_param_names``: the 2021 parameter names of the same network (e.g. the
    ``transformer.*`` keys of the same checkpoint, prefix removed); dots are removed from each
    to find which parameter a shadow belongs to, then the name is converted and its dots
    removed again. ``decay`` and ``num_updates`` pass through; shadows of dropped parameters
    (the unused encoder ``to_logits``) are dropped.
    """
    _check_kind(model_kind)
    lookup: dict[str, str] = {}
    for name in legacy_param_names:
        s_name = shadow_name(name)
        if s_name in lookup and lookup[s_name] != name:
            raise ValueError(
                f"EMA shadow name {s_name!r} is ambiguous: {lookup[s_name]!r} and {name!r}"
            )
        lookup[s_name] = name
    out = {}
    for s_name, value in ema_state_dict.items():
        if s_name in ("decay", "num_updates"):
            out[s_name] = value
            continue
        if s_name not in lookup:
            raise ValueError(
                f"EMA shadow {s_name!r} matches no parameter of the checkpoint's transformer"
            )
        new = convert_legacy_key(lookup[s_name], model_kind)
        if new is not None:
            out[shadow_name(new)] = value
    return out


def split_checkpoint(state_dict: Mapping[str, torch.Tensor], model_prefix: str = "transformer.",
                     ema_prefix: str = "transformer_ema."):
    """(transformer entries, EMA entries) of a denoiser state dict, prefixes removed."""
    model = {k[len(model_prefix):]: v for k, v in state_dict.items() if k.startswith(model_prefix)}
    ema = {k[len(ema_prefix):]: v for k, v in state_dict.items() if k.startswith(ema_prefix)}
    return model, ema


def convert_legacy_checkpoint(state_dict: Mapping[str, torch.Tensor], model_kind: str,
                              model_prefix: str = "transformer.",
                              ema_prefix: str = "transformer_ema.") -> dict[str, torch.Tensor]:
    """A whole denoiser state dict with its transformer and EMA entries renamed to ours.

    Entries under other prefixes (first stage, schedule buffers) are kept as they are.
    A state dict already in our format is returned unchanged.
    """
    _check_kind(model_kind)
    model, ema = split_checkpoint(state_dict, model_prefix, ema_prefix)
    if model_kind == "gpt" or not is_legacy_state_dict(model):
        return dict(state_dict)
    out = {k: v for k, v in state_dict.items()
           if not (k.startswith(model_prefix) or k.startswith(ema_prefix))}
    renamed = convert_legacy_state_dict(model, model_kind)
    out.update({model_prefix + k: v for k, v in renamed.items()})
    if ema:
        converted = convert_legacy_ema_state_dict(ema, model.keys(), model_kind)
        out.update({ema_prefix + k: v for k, v in converted.items()})
    return out

