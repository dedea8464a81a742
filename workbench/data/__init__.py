"""Data: the audio store, the embedded corpus, view sampling and real-dataset ingestion.

`open_dataset(cfg)` is the one entry point the rest of the package uses: it returns the
`AudioStore` of ``cfg.data.dataset`` (the embedded corpus and the transfer set are generated on
first use; a real dataset is ingested on first use from ``cfg.data.root``).
"""

from __future__ import annotations

from workbench.config import RunConfig
from workbench.data.corpus import build_corpus
from workbench.data.ingest import ingest
from workbench.data.store import AudioStore
from workbench.data.transfer import build_transfer


def open_dataset(cfg: RunConfig) -> AudioStore:
    if cfg.data.dataset == "synth":

        return build_corpus(cfg.corpus)
    if cfg.data.dataset == "transfer":

        return build_transfer(cfg.transfer)

    return ingest(cfg.data, sample_rate=cfg.audio.sample_rate)


def pretrain_indices(store: AudioStore):
    """Track indices used for self-supervised pretraining (the store's ``pretrain_splits``)."""
    return store.indices(store.meta.get("pretrain_splits", ["pool"]))
