"""A dataset of x_0 token arrays written once by ``scripts/pretokenize.py``, so training skips the
frozen VQGAN encoder at every step (the original encodes every batch on the fly; that path stays).

One ``.npz`` per split: ``tokens`` (N, L) and, when written with ``--flips``, ``flipped`` (N, L), the
tokens of each image mirrored left to right (a flip of the image is not a flip of the token grid,
so both encodings are stored); ``class_label`` (N,) and ``caption`` (N,) when the source dataset had
them; ``meta``, a JSON string naming the first stage that encoded them. Items hold ``tokens`` and
those keys; ``flip_p`` picks the mirrored encoding with that probability, like the image datasets'
random flip.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset

from imagebart.data.base import DataNotFoundError, check_flip_p


class PretokenizedImages(Dataset):
    """Items ``{"tokens": int64 (L,), ("class_label"), ("caption")}`` from a pretokenized ``.npz``."""

    def __init__(self, path: str, flip_p: float = 0.0):
        self.path = Path(path)
        if not self.path.is_file():
            raise DataNotFoundError(f"pretokenized data not found: {self.path} (resolved: {self.path.resolve()}); "
                                    "write it with scripts/pretokenize.py")
        try:
            with np.load(self.path, allow_pickle=False) as arrays:
                self.arrays = {key: arrays[key] for key in arrays.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"{self.path} is not a pretokenized .npz ({err})") from None
        if "tokens" not in self.arrays or "meta" not in self.arrays or self.arrays["tokens"].ndim != 2:
            raise ValueError(f"{self.path}: expected 'tokens' (N, L) and 'meta' arrays (scripts/pretokenize.py "
                             f"writes them), found {sorted(self.arrays)}")
        self.meta = json.loads(str(self.arrays.pop("meta")))
        self.flip_p = check_flip_p(flip_p)
        if self.flip_p > 0 and "flipped" not in self.arrays:
            raise ValueError(f"{self.path} holds no mirrored encodings, so flip_p={flip_p} cannot be honoured; "
                             "pretokenize with --flips or set flip_p: 0")
        self._rng = np.random.default_rng()

    def __len__(self) -> int:
        return len(self.arrays["tokens"])

    def __getitem__(self, i: int) -> dict:
        flip = self.flip_p > 0 and self._rng.random() < self.flip_p
        item = {"tokens": self.arrays["flipped" if flip else "tokens"][i].astype(np.int64)}
        for key in ("class_label", "caption"):
            if key in self.arrays:
                value = self.arrays[key][i]
                item[key] = str(value) if key == "caption" else int(value)
        return item
