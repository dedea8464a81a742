"""The one entry point to data: `open_dataset(cfg)`, the `AudioStore` a config names.

The embedded corpus (``synth``) and the transfer set (``transfer``) are generated on first use;
any other dataset (MagnaTagATune, MTG-Jamendo, GTZAN, a folder, a CSV) is ingested on first use
from ``cfg.data.root``. `pretrain_indices` says which tracks a store offers for pretraining.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from workbench.config import RunConfig
from workbench.data.corpus import build_corpus
from workbench.data.ingest import ingest
from workbench.data.store import AudioStore
from workbench.data.transfer import build_transfer

GENERATED: dict[str, Callable[[RunConfig], AudioStore]] = {
    "synth": lambda cfg: build_corpus(cfg.corpus),
    "transfer": lambda cfg: build_transfer(cfg.transfer),
}


def open_dataset(cfg: RunConfig) -> AudioStore:
    """The store of ``cfg.data.dataset``: generated (`GENERATED`) or ingested from ``cfg.data.root``."""
    make = GENERATED.get(cfg.data.dataset)
    return make(cfg) if make else ingest(cfg.data, sample_rate=cfg.audio.sample_rate)


def pretrain_indices(store: AudioStore, cfg: RunConfig | None = None) -> np.ndarray:
    """Track indices used for self-supervised pretraining: the store's ``pretrain_splits`` (a real
    dataset's train split, the embedded corpus's pool), or for the embedded corpus the splits that
    ``cfg.corpus.pretrain_splits`` names (their audio only; labels are never read)."""
    splits = store.meta.get("pretrain_splits", ["pool"])
    if cfg is not None and store.meta.get("dataset") == "synth":
        splits = list(cfg.corpus.pretrain_splits)
    return store.indices(splits)
