"""The smallest denoising networks of each kind, with weights spread enough to give peaked logits."""

import torch

from imagebart.modules.transformer.mingpt import GPT
from imagebart.modules.xtransformers.x_transformer import XTransformer


def tiny_network(kind: str, codes: int, length: int, cond: int, vocabulary: int, sharpness: float = 0.3):
    """``kind`` "gpt" (prefix of ``cond`` tokens) or an encoder-decoder (encoder input of ``cond`` tokens)."""
    torch.manual_seed(0)
    if kind == "gpt":
        net = GPT(vocab_size=codes, input_vocab_size=vocabulary, block_size=cond + length, n_layer=2, n_head=2,
                  n_embd=16)
    else:
        net = XTransformer(dim=16, enc_num_tokens=vocabulary, enc_depth=1, enc_heads=2, enc_attn_dim_head=8,
                           enc_max_seq_len=cond, dec_num_tokens=codes, dec_depth=2, dec_heads=2,
                           dec_attn_dim_head=8, dec_max_seq_len=length)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(sharpness * torch.randn_like(p))
    return net.eval()
