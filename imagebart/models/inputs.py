"""What a denoiser trains on: x_0 tokens, encoded from the batch's images by the frozen first stage,
or read from the batch when a pretokenized dataset (:mod:`imagebart.data.tokens`) already holds them,
which skips the VQGAN encoder at every step."""

from __future__ import annotations

import torch

TOKENS_KEY = "tokens"  # the batch key of pretokenized x_0 (B, L)


def batch_size(model, batch) -> int:
    """Examples in ``batch``, whichever input it carries."""
    return len(batch[TOKENS_KEY] if TOKENS_KEY in batch else batch[model.first_stage_key])


def given_tokens(model, batch):
    """The batch's pretokenized x_0 (B, L) on the model's device, checked against the model; None without."""
    if TOKENS_KEY not in batch:
        return None
    x0 = torch.as_tensor(batch[TOKENS_KEY]).to(model.device).long()
    if x0.dim() != 2 or x0.shape[1] != model.tokens_per_image:
        raise ValueError(f"batch[{TOKENS_KEY!r}] must hold x_0 tokens (B, L={model.tokens_per_image}), got shape "
                         f"{tuple(x0.shape)}: pretokenize with this model's first stage")
    if len(x0) and (x0.min() < 0 or x0.max() >= model.num_codes):
        raise ValueError(f"batch[{TOKENS_KEY!r}] holds codes {int(x0.min())}..{int(x0.max())}, but the first stage "
                         f"has K={model.num_codes}: pretokenize with this model's first stage")
    return x0


def clean_tokens_and_scales(model, batch) -> tuple:
    """(x_0 (B, L), t (B,)): t is drawn before the images are encoded, as the original did."""
    x0 = given_tokens(model, batch)
    if x0 is not None:
        return x0, model.draw_scales(len(x0), x0.device)
    x = model.get_input(batch, model.first_stage_key)
    t = model.draw_scales(x.shape[0], x.device)
    return model.encode_tokens(x), t
