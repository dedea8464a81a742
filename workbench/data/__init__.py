"""Data: audio stores, the embedded corpus, the transfer set, view sampling and real-dataset ingestion.

`workbench.data.datasets.open_dataset(cfg)` is the one entry point the rest of the package uses.
This package file imports nothing, so that a module of it (the corpus generator, say) loads only
what it needs: the corpus never imports the transfer set's SoundFont renderer.
"""
