"""Autoregressive sampling of one reverse step x_{t-1} ~ p_θ(x_{t-1} | x_t), with a KV cache.

One loop for both network kinds: it only uses the denoising-network interface
(``decode_step`` / ``rewind_cache`` / ``teacher_forced``, see :mod:`imagebart.modules.xtransformers.x_transformer`),
so the encoder-decoder (condition ``[t, (cond…), x_t]``) and the decoder-only GPT (condition
``[T, (cond…)]``) sample the same way. ``use_cache=False`` re-runs the whole prefix at every step
(the original's sampler, kept as the reference for tests and benchmarks). ``guide`` logits
(B, L, K) are added before filtering: editing forces kept tokens with 0 / -inf.

Classifier-free guidance: given ``uncond_condition`` (the same input with the null condition),
the conditional and unconditional rows run as one batch of 2B (one KV cache holds both
branches), and each position samples from l_u + s·(l_c - l_u), s = ``guidance_scale``.
``condition_mask`` (and ``uncond_mask``), (B, C) bool, mark padding in a condition (False), e.g.
the padded caption tokens of a text-conditional chain; no position attends to it.

Exact speculative decoding (``proposal`` and ``gamma``): a reverse step keeps most tokens, so
x_t is a free draft of x_{t-1}. A pass feeds [the last token, d_1..d_g] (g proposals) through
the decoder at once with the KV cache; with p_i the filtered distribution (guidance, guide,
temperature, top-k) at draft i, d_i is accepted with probability p_i(d_i), the first rejected
position draws from p_i without d_i (renormalised), and a pass whose g drafts all pass draws one
token more from p_{g+1}; the cache is then rewound to the kept tokens. Every kept token is a
draw from p_i given the kept prefix, so this samples exactly what token-by-token decoding
samples (greedy: accept while the argmax is the draft; identical tokens). Rows of a batch accept
different counts: the batch (its KV cache) advances by the least any row decided, and each row
keeps everything it decided beyond that as drafts that pass for sure in the next pass, so every
row follows the single-row procedure with its own coins (what another row does only moves the
pass boundaries, never a row's decisions). ``certain`` proposals (editing: positions the guide forces) are
accepted with probability 1; runs of them in every row join a pass whole, so kept regions cost
one decoder pass per run instead of one per token.

Legend: B batch, L tokens per image, K codes, g drafts in a pass.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
import torch.nn.functional as F

DEFAULT_GAMMA = 6  # drafts verified per decoder pass where x_t is a draft (see benchmarks/sampling.py)

# logit filters


def top_k_logits(logits: torch.Tensor, k: Optional[int]) -> torch.Tensor:
    """Keep the k largest logits per row, -inf elsewhere (k >= K or None keeps all)."""
    if k is None or k >= logits.shape[-1]:
        return logits
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def pick_tokens(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None,
                greedy: bool = False, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """One token per row from (B, K) logits: temperature, top-k, then multinomial (or argmax)."""
    if greedy:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    probs = filtered_probabilities(logits, temperature, top_k)  # (B, K)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


def filtered_probabilities(logits: torch.Tensor, temperature: float = 1.0, top_k: Optional[int] = None):
    """The distribution a token is drawn from: softmax of the top-k of logits / temperature (float32)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return F.softmax(top_k_logits(logits / temperature, top_k).float(), dim=-1)


def guided_logits(cond_logits: torch.Tensor, uncond_logits: torch.Tensor, scale: float) -> torch.Tensor:
    """l_u + s·(l_c - l_u), written as l_c + (s-1)·(l_c - l_u) so that s = 1 returns l_c exactly."""
    return cond_logits + (scale - 1.0) * (cond_logits - uncond_logits)


def keep_guide(x0: torch.Tensor, keep: torch.Tensor, vocabulary: int) -> torch.Tensor:
    """Additive logits (B, L, V): 0 / -inf forcing x0 at kept positions (keep (B, L) bool), 0 at
    edited ones. V is the network's output vocabulary (K, or more when a config says so).

    The sampler adds them before temperature and top-k; -inf stays -inf under both, so only the
    clean token survives at a kept position and it is drawn with probability 1.
    """
    guide = torch.zeros(*x0.shape, vocabulary, device=x0.device)  # (B, L, V)
    forced = torch.full_like(guide, float("-inf")).scatter_(-1, x0[..., None], 0.0)  # (B, L, V)
    return torch.where(keep[..., None], forced, guide)


# the loop


@torch.no_grad()
def sample_tokens(network, condition: torch.Tensor, steps: int, temperature: float = 1.0,
                  top_k: Optional[int] = None, guide: Optional[torch.Tensor] = None, greedy: bool = False,
                  use_cache: bool = True, generator: Optional[torch.Generator] = None,
                  callback: Optional[Callable[[int], None]] = None, return_logits: bool = False,
                  uncond_condition: Optional[torch.Tensor] = None, guidance_scale: float = 1.0,
                  condition_mask: Optional[torch.Tensor] = None, uncond_mask: Optional[torch.Tensor] = None,
                  proposal: Optional[torch.Tensor] = None, certain: Optional[torch.Tensor] = None,
                  gamma: int = 0, stats: Optional[dict] = None):
    """Sample ``steps`` tokens (B, steps) given ``condition`` (B, C); optionally the logits (B, steps, K).

    ``proposal`` (B, steps) drafts verified ``gamma`` at a time (see the module docstring);
    ``certain`` (B, steps) bool marks proposals the ``guide`` forces, whose runs join a pass whole.
    ``stats``, a dict, receives ``passes`` and, over all rows, the drafts ``examined`` (coins tossed)
    and ``accepted``.
    """
    if gamma < 0 or int(gamma) != gamma:
        raise ValueError(f"gamma (drafts verified per pass) must be an int >= 0, got {gamma!r}")
    for name, value in (("proposal", proposal), ("certain", certain)):
        if value is not None and tuple(value.shape) != (len(condition), steps):
            raise ValueError(f"{name} must have shape (B, steps) = {(len(condition), steps)}, "
                             f"got {tuple(value.shape)}")
    if certain is not None and proposal is None:
        raise ValueError("certain positions need the proposal that holds their tokens")
    guided = uncond_condition is not None
    if guided:
        if uncond_condition.shape != condition.shape:
            raise ValueError(f"uncond_condition {tuple(uncond_condition.shape)} must match condition "
                             f"{tuple(condition.shape)}")
        condition = torch.cat((condition, uncond_condition))  # (2B, C): conditional rows first
        if condition_mask is not None or uncond_mask is not None:
            full = condition.new_ones(uncond_condition.shape, dtype=torch.bool)
            condition_mask = torch.cat((full if condition_mask is None else condition_mask,
                                        full if uncond_mask is None else uncond_mask))  # (2B, C)
    run = _Run(network, condition, None if condition_mask is None else condition_mask.bool(), guided,
               guidance_scale, guide, temperature, top_k, greedy, generator)
    if not use_cache:
        tokens, logits = _reference_loop(run, steps, callback)
    else:
        tokens, logits = _verified_loop(run, steps, proposal, certain, int(gamma) if proposal is not None else 0,
                                        callback, {} if stats is None else stats)
    return (tokens, logits) if return_logits else tokens


class _Run:
    """What every pass of one sampling call shares: the network inputs and the logit filters."""

    def __init__(self, network, condition, condition_mask, guided, guidance_scale, guide, temperature, top_k,
                 greedy, generator):
        self.network, self.condition, self.guided = network, condition, guided
        self.masked = {} if condition_mask is None else {"condition_mask": condition_mask}
        self.guidance_scale, self.guide = guidance_scale, guide
        self.temperature, self.top_k, self.greedy, self.generator = temperature, top_k, greedy, generator
        if not greedy and temperature <= 0:  # before the network runs
            raise ValueError(f"temperature must be > 0, got {temperature}")

    def both(self, tokens: torch.Tensor) -> torch.Tensor:
        """Feed the conditional and the unconditional branch the same tokens."""
        return torch.cat((tokens, tokens)) if self.guided else tokens

    def final_logits(self, logits: torch.Tensor, start: int) -> torch.Tensor:
        """Guided, then guide-shifted logits (B, m, K) of the positions start..start+m-1."""
        if self.guided:
            logits = guided_logits(*logits.chunk(2), self.guidance_scale)  # (B, m, K)
        if self.guide is not None:
            logits = logits + self.guide[:, start:start + logits.shape[1]]
        return logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """The filtered distribution p_i that every token is drawn from: (B, m, K)."""
        return filtered_probabilities(logits, self.temperature, self.top_k)


def _reference_loop(run: _Run, steps: int, callback):
    """The original's algorithm: the whole prefix again at every step (quadratic work); the appended
    placeholder is never read (causal). Kept as the reference for tests and benchmarks."""
    tokens = run.condition.new_zeros((len(run.condition) // (2 if run.guided else 1), 0))  # (B, 0)
    all_logits = []
    for i in range(steps):
        if callback is not None:
            callback(i)
        logits = run.network.teacher_forced(run.condition, F.pad(run.both(tokens), (0, 1)), **run.masked)
        logits = run.final_logits(logits[:, -1:], i)[:, 0]  # (B, K) for position i
        all_logits.append(logits)
        new = pick_tokens(logits, run.temperature, run.top_k, run.greedy, run.generator)  # (B, 1)
        tokens = torch.cat((tokens, new), dim=1)
    return tokens, torch.stack(all_logits, 1)


def _pass_lengths(steps: int, certain: Optional[torch.Tensor], gamma: int) -> Callable[[int], int]:
    """Drafts to verify in the pass that starts at position ``pos``: the run of positions certain in
    every row, then ``gamma`` more, leaving room for the one token each pass draws."""
    runs = [0] * (steps + 1)  # runs[i]: positions i, i+1, … certain in every row
    if certain is not None:
        every_row = certain.all(dim=0).tolist()  # one host sync per call
        for i in range(steps - 1, -1, -1):
            runs[i] = runs[i + 1] + 1 if every_row[i] else 0
    return lambda pos: min(runs[pos] + gamma, steps - pos - 1)


def _verified_loop(run: _Run, steps: int, proposal, certain, gamma: int, callback, stats: dict):
    """KV-cached sampling, a pass at a time: each pass verifies g proposals per row and draws one token.

    ``decided`` (B, steps) holds each row's final tokens ahead of the batch (-1 elsewhere): the
    certain ones, and what a row accepted and drew beyond the batch's advance. They are fed again
    as drafts that pass for sure, so no row ever redraws a position it has decided."""
    network, rows = run.network, len(run.condition) // (2 if run.guided else 1)
    drafts_for = _pass_lengths(steps, certain, gamma if proposal is not None else 0)
    decided = None if proposal is None else (proposal.new_full(proposal.shape, -1) if certain is None
                                             else torch.where(certain, proposal, -1))  # (B, steps)
    chunks, logit_chunks, cache, last = [], [], None, None
    pos = passes = examined = accepted = 0
    while pos < steps:
        if callback is not None:
            callback(pos)
        g = drafts_for(pos)
        ahead = None if decided is None else decided[:, pos:pos + g + 1]  # (B, g+1)
        drafts = proposal[:, pos:pos + g] if g else run.condition.new_zeros((rows, 0))  # (B, g)
        if g:
            drafts = torch.where(ahead[:, :g] >= 0, ahead[:, :g], drafts)
        fed = drafts if last is None else torch.cat((last, drafts), dim=1)  # the first pass starts at sos
        logits, cache = network.decode_step(run.condition, run.both(fed), cache, **run.masked)
        logits = run.final_logits(logits[:, -(g + 1):], pos)  # (B, g+1, K): positions pos..pos+g (a
        # decoder-only network's first pass also returns the logits of its prefix)
        if g == 0:  # token by token: exactly the plain cached loop's draws
            new = pick_tokens(logits[:, 0], run.temperature, run.top_k, run.greedy, run.generator)  # (B, 1)
            new = new if ahead is None else torch.where(ahead >= 0, ahead, new)
            advance = 1
        else:
            new, n_accepted = _verify(run, logits, drafts, ahead)  # (B, g+1), (B,)
            index, fresh = torch.arange(g, device=new.device), ahead[:, :g] < 0  # (g,), (B, g): coins tossed
            fewest, total, looked = torch.stack((
                n_accepted.min(), ((index < n_accepted[:, None]) & fresh).sum(),
                ((index <= n_accepted[:, None]) & fresh).sum())).tolist()  # one host sync a pass
            advance = fewest + 1  # the batch advances by the least any row decided
            mine = torch.arange(g + 1, device=new.device) <= n_accepted[:, None]  # (B, g+1) what each row decided
            decided[:, pos:pos + g + 1] = torch.where(mine, new, decided[:, pos:pos + g + 1])
            new = new[:, :advance]
            examined, accepted = examined + looked, accepted + total
            cache = network.rewind_cache(cache, g + 1 - advance)  # forget the inputs past the kept tokens
        chunks.append(new)
        logit_chunks.append(logits[:, :advance])
        last, pos, passes = new[:, -1:], pos + advance, passes + 1
    stats.update(passes=stats.get("passes", 0) + passes, examined=stats.get("examined", 0) + examined,
                 accepted=stats.get("accepted", 0) + accepted)
    return torch.cat(chunks, dim=1), torch.cat(logit_chunks, dim=1)


def _verify(run: _Run, logits: torch.Tensor, drafts: torch.Tensor, ahead: Optional[torch.Tensor]):
    """Speculative sampling's acceptance rule for one pass.

    logits (B, g+1, K) at the g draft positions and the one after; drafts (B, g); ``ahead`` (B, g+1)
    the tokens rows had already decided there (-1 elsewhere), which pass for sure. Returns the
    row's tokens (B, g+1): its accepted drafts, then the token drawn at the first rejection (from
    p minus the draft, renormalised) or after the last draft (from p, or the decided one), and the
    number of accepted drafts per row (B,). Greedy: accept while the argmax is the draft."""
    g = drafts.shape[1]
    if run.greedy:
        choice = logits.argmax(dim=-1)  # (B, g+1)
        ok = choice[:, :g] == drafts
    else:
        probs = run.probabilities(logits)  # (B, g+1, K)
        p_draft = probs[:, :g].gather(-1, drafts[..., None])[..., 0]  # (B, g)
        ok = torch.rand(p_draft.shape, generator=run.generator, device=p_draft.device) < p_draft
    if ahead is not None:
        ok = ok | (ahead[:, :g] >= 0)
    n_accepted = ok.long().cumprod(dim=1).sum(dim=1)  # (B,) leading accepted drafts
    rows = torch.arange(len(drafts), device=drafts.device)
    if run.greedy:
        drawn = choice[rows, n_accepted]  # (B,)
    else:
        p = probs[rows, n_accepted]  # (B, K) at the first rejection, or after the last draft
        wrong = drafts.gather(1, n_accepted.clamp(max=g - 1)[:, None])[:, 0]  # (B,) the rejected draft
        p = residual_distribution(p, wrong, n_accepted < g)
        drawn = torch.multinomial(p, num_samples=1, generator=run.generator)[:, 0]  # (B,)
    if ahead is not None:  # a row that had decided the position after its last draft keeps that token
        before = ahead[rows, n_accepted]
        drawn = torch.where(before >= 0, before, drawn)
    tokens = torch.cat((drafts, drafts[:, :1]), dim=1).scatter(1, n_accepted[:, None], drawn[:, None])
    return tokens, n_accepted  # (B, g+1), (B,)


def residual_distribution(p: torch.Tensor, draft: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Where the draft (B,) was rejected (B,), p (B, K) without it, renormalised: what makes the
    accept-or-redraw step a draw from p. Rows that accepted every draft keep p."""
    residual = p.scatter(1, draft[:, None], 0.0)  # (B, K)
    mass = residual.sum(dim=1, keepdim=True)  # (B, 1); 0 only if p(draft) was 1, then never rejected
    return torch.where(rejected[:, None] & (mass > 0), residual / mass.clamp_min(1e-30), p)
