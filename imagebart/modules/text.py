"""Captions as encoder tokens (the paper's text-conditional chains, §4.2, "prepending tokens").

A caption becomes ``max_length`` token ids placed after the scale token, as a class label is:
``[t, pad…, caption tokens…, x_t]``. Padding is on the left (a decoder-only last scale predicts
its first token from the prefix's last position, which must be a real token) and masked out of
attention (:meth:`TextProvider.condition_mask`). Ids are shifted by ``offset`` into the shared
encoder vocabulary, so that caption tokens can get embeddings of their own (``offset`` = K) or
share the codes' (``offset`` 0, as class tokens do).

The tokenizer is a Hugging Face ``tokenizers`` BPE model trained on a dataset's captions
(:func:`train_tokenizer`, ``scripts/train_tokenizer.py``) and saved as one JSON file beside the
model. ``[NULL]`` is the empty caption of classifier-free guidance: training replaces a caption by
it with probability ``cond_drop_prob``.

Legend: B batch, C = max_length caption positions.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Iterable, Sequence, Union

import torch
from torch import nn

logger = logging.getLogger(__name__)

PAD, UNK, NULL = "[PAD]", "[UNK]", "[NULL]"
SPECIAL_TOKENS = (PAD, UNK, NULL)  # ids 0, 1, 2 in every tokenizer trained here
WORD_END = "</w>"  # BPE marks the last piece of a word, so decoding restores the spaces


def train_tokenizer(captions: Iterable[str], vocab_size: int = 1000):
    """A lower-casing BPE tokenizer over whitespace/punctuation-split words of ``captions``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token=UNK, end_of_word_suffix=WORD_END))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.decoder = decoders.BPEDecoder(suffix=WORD_END)  # word ends become spaces again
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
                                  end_of_word_suffix=WORD_END)
    tokenizer.train_from_iterator(captions, trainer)
    return tokenizer


def load_tokenizer(path: Union[str, Path]):
    """A tokenizer saved by :func:`train_tokenizer` (``tokenizer.save(path)``)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tokenizer file {path} not found; train one on your captions with "
                                "python scripts/train_tokenizer.py --config <training config> --out <file>")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as err:  # noqa: BLE001 - the library raises its own exception types
        raise ValueError(f"{path} is not a tokenizers JSON file: {err}") from None
    for token in SPECIAL_TOKENS:
        if tokenizer.token_to_id(token) is None:
            raise ValueError(f"tokenizer {path} has no {token} token; train it with scripts/train_tokenizer.py")
    return tokenizer


class TextProvider(nn.Module):
    """``batch[key]`` (B captions) -> (B, max_length) encoder tokens, left-padded (see the module docstring)."""

    def __init__(self, tokenizer: str, max_length: int = 32, key: str = "caption", offset: int = 0):
        super().__init__()
        if not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"conditioner max_length must be an int >= 2, got {max_length!r}")
        if not isinstance(offset, int) or offset < 0:
            raise ValueError(f"conditioner offset must be an int >= 0, got {offset!r}")
        self.tokenizer_path = str(tokenizer)
        self.tokenizer = load_tokenizer(tokenizer)
        self.tokenizer_sha256 = hashlib.sha256(Path(tokenizer).read_bytes()).hexdigest()
        self.max_length, self.key, self.offset = max_length, key, offset
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.pad_token = offset + self.tokenizer.token_to_id(PAD)
        self.null_token = offset + self.tokenizer.token_to_id(NULL)
        self._warned_truncation = False

    # what the denoiser checks

    condition_length = property(lambda self: self.max_length)  # encoder positions a caption takes

    def vocabulary_needed(self, with_null: bool = False) -> int:
        """Encoder ids the captions use: offset + the tokenizer's vocabulary (which holds the null caption's)."""
        return self.offset + self.vocab_size

    # captions -> tokens

    def tokenize(self, captions: Sequence[str]) -> torch.Tensor:
        """(B, max_length) ids: each caption's first max_length tokens, padded on the left."""
        if isinstance(captions, str) or not all(isinstance(c, str) for c in captions):
            raise TypeError(f"captions must be a list of strings, got {type(captions).__name__}")
        rows = []
        for encoding in self.tokenizer.encode_batch(list(captions)):
            ids = encoding.ids
            if not ids:
                raise ValueError("an empty caption has no tokens; use the null condition for 'no caption'")
            if len(ids) > self.max_length:
                if not self._warned_truncation:
                    logger.warning("a caption of %d tokens is cut to max_length=%d (its first tokens are kept)",
                                   len(ids), self.max_length)
                    self._warned_truncation = True
                ids = ids[:self.max_length]
            rows.append([self.pad_token] * (self.max_length - len(ids)) + [self.offset + i for i in ids])
        return torch.tensor(rows, dtype=torch.long)  # (B, C)

    def decode(self, tokens: torch.Tensor) -> list:
        """Captions back from (B, max_length) ids (padding and the null token dropped)."""
        specials = {self.pad_token, self.null_token}
        return [self.tokenizer.decode([int(i) - self.offset for i in row if int(i) not in specials])
                for row in tokens]

    def forward(self, batch) -> torch.Tensor:
        if self.key not in batch:
            raise KeyError(f"TextProvider expects the batch to hold {self.key!r} (captions); it has {sorted(batch)}")
        captions = batch[self.key]
        return self.tokenize([captions] if isinstance(captions, str) else list(captions))

    def condition_mask(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, C) True where a token is attended to, False at padding."""
        return tokens != self.pad_token

    def null_condition(self, batch_size: int, device=None) -> torch.Tensor:
        """(B, C): the null caption, ``[pad…, NULL]``."""
        row = [self.pad_token] * (self.max_length - 1) + [self.null_token]
        return torch.tensor([row] * batch_size, dtype=torch.long, device=device)
