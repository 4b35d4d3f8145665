"""The original's ``main.DataModuleFromConfig``: datasets built from ``{target, params}``."""

from __future__ import annotations

import logging

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from imagebart.util import instantiate_from_config

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test", "predict")


class WrappedDataset(Dataset):
    """Any object with ``__len__`` and ``__getitem__`` as a torch dataset (``wrap: true``)."""

    def __init__(self, dataset):
        self.data = dataset

    def __len__(self):
        return len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


def worker_init_fn(worker_id: int) -> None:
    """Give every loader worker its own numpy stream (random flips differ across workers)."""
    seed = torch.initial_seed() % 2**32
    np.random.seed((seed + worker_id) % 2**32)


class DataModuleFromConfig(pl.LightningDataModule):
    """Train / validation / test / predict datasets from configs, with the original's params."""

    def __init__(
        self,
        batch_size: int,
        train=None,
        validation=None,
        test=None,
        predict=None,
        wrap: bool = False,
        num_workers: int | None = None,
        shuffle_test_loader: bool = False,
        use_worker_init_fn: bool = False,
        shuffle_val_dataloader: bool = False,
    ):
        super().__init__()
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"data.params.batch_size must be a positive integer, got {batch_size!r}")
        if num_workers is not None and (not isinstance(num_workers, int) or isinstance(num_workers, bool)
                                        or num_workers < 0):
            raise ValueError(f"data.params.num_workers must be an integer >= 0 (0: load in the main process), "
                             f"got {num_workers!r}")
        self.batch_size = batch_size
        self.num_workers = num_workers if num_workers is not None else batch_size * 2
        self.wrap = wrap
        self.use_worker_init_fn = use_worker_init_fn
        self.shuffle = {"train": True, "validation": shuffle_val_dataloader,
                        "test": shuffle_test_loader, "predict": False}
        self.dataset_configs = {
            name: cfg
            for name, cfg in zip(SPLITS, (train, validation, test, predict))
            if cfg is not None
        }
        self.datasets: dict[str, Dataset] = {}
        # Lightning looks these hooks up by name: only offer the splits that were configured
        if "train" in self.dataset_configs:
            self.train_dataloader = lambda: self._dataloader("train")
        if "validation" in self.dataset_configs:
            self.val_dataloader = lambda: self._dataloader("validation")
        if "test" in self.dataset_configs:
            self.test_dataloader = lambda: self._dataloader("test")
        if "predict" in self.dataset_configs:
            self.predict_dataloader = lambda: self._dataloader("predict")

    def setup(self, stage=None):
        if self.datasets:
            return
        for name, cfg in self.dataset_configs.items():
            try:
                dataset = instantiate_from_config(cfg)
            except (ValueError, TypeError, FileNotFoundError) as err:
                raise type(err)(f"data.params.{name}: {err}") from err
            if len(dataset) == 0:
                raise ValueError(
                    f"data.params.{name} ({cfg.get('target')}) is empty: it yields no examples"
                )
            self.datasets[name] = WrappedDataset(dataset) if self.wrap else dataset
        for name, dataset in self.datasets.items():
            logger.info("data %s: %s with %d examples", name, type(dataset).__name__, len(dataset))

    def _dataloader(self, split: str) -> DataLoader:
        self.setup()
        return DataLoader(
            self.datasets[split],
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            shuffle=self.shuffle[split],
            worker_init_fn=worker_init_fn if (self.use_worker_init_fn or self.num_workers) else None,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )
