"""What a denoiser shows during training: inputs, x_{t-1} and x_t decoded, a one-scale sample,
the forward chain x_0 -> x_T and (joint models) a full reverse chain x_T -> x_0.

The names are the row titles of the logged picture (:func:`imagebart.images.labelled_grid`), and
``column_titles`` gives each column's t: every column is drawn at its own scale, to see them all.
"""

from __future__ import annotations

import torch

from imagebart.diffusion.multinomial import q_sample_chain
from imagebart.models.inputs import given_tokens


@torch.no_grad()
def denoiser_image_logs(model, batch, temperature=None, top_k=None, callback=None, n: int = 4, sample: bool = True,
                        log_diffusion: bool = True, sample_full=None) -> dict:
    """Image rows (N, 3, H, W) in [-1, 1] by title, and ``column_titles``; ``sample_full`` defaults to
    "jointly trained"."""
    temperature = 1.0 if temperature is None else temperature
    top_k = model.resolve_top_k(top_k)  # None: the config's
    x0 = given_tokens(model, batch)  # pretokenized data: the inputs are x_0 decoded
    x = model.get_input(batch, model.first_stage_key)[:n].to(model.device) if x0 is None else model.decode_tokens(x0[:n])
    cond = model.get_conditioning(batch)[:n] if model.conditioner is not None else None
    t = model.draw_scales(x.shape[0], x.device, force_random=True)  # (B,) any scale, to see them all
    x0 = model.encode_tokens(x) if x0 is None else x0[:n]  # (B, L)
    example = model.corrupt(x0, t)
    log = {"inputs": x,
           "x_t-1 (target)": model.decode_tokens(example.x_prev),
           "x_t (the network's input)": model.decode_tokens(example.x_t)}
    if sample:
        samples = model.sample_x_prev(example.x_t, t, cond, temperature=temperature, top_k=top_k, callback=callback)
        log["x_t-1 sampled from x_t"] = model.decode_tokens(samples)
    log["column_titles"] = [f"t={int(step)}" for step in t]
    if log_diffusion:
        row = q_sample_chain(x0[:1], model.schedule, model.num_codes)[:, 0]  # x_0 .. x_T (T+1, L)
        log["forward chain x_0 -> x_T of input 1"] = model.decode_tokens(row)  # (T+1, 3, H, W)
    if sample_full if sample_full is not None else model.single_scale is None:
        tokens = torch.randint(0, model.num_codes, (1, model.tokens_per_image), device=model.device)  # x_T
        images = [model.decode_tokens(tokens)]
        for step in range(model.n_scales, 0, -1):
            t_step = torch.full((1,), step, dtype=torch.long, device=model.device)
            tokens = model.sample_x_prev(tokens, t_step, None if cond is None else cond[:1],
                                         temperature=temperature, top_k=top_k)
            images.append(model.decode_tokens(tokens))
        log["reverse chain x_T -> x_0, sampled"] = torch.cat(images)  # (T+1, 3, H, W)
    return log
