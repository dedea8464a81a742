"""Equal tuning (`workbench.tuning`): one grid and the same seeds for every method, settings chosen
on the valid split only, and the chosen settings applied through `config.TUNED`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench import config, tuning
from workbench.methods import METHODS


def test_every_method_gets_the_same_grid_and_seeds(smoke_cfg):
    grid = tuning.tuning_configs(smoke_cfg)
    per_method = {m: [(s, seed) for mm, s, seed, _ in grid if mm == m] for m in METHODS}
    first = next(iter(per_method.values()))
    assert all(v == first for v in per_method.values()) and len(first) == len(tuning.settings()) * len(tuning.SEEDS)
    lrs = {c.train.lr for m, s, seed, c in grid if m == "byol"}
    assert lrs == {float(v) for v in tuning.GRID["train.lr"]}


def test_for_method_applies_the_tuned_settings(smoke_cfg, monkeypatch):
    monkeypatch.setitem(config.TUNED, "smoke", {"byol": ("train.lr=0.0042",)})
    assert config.for_method(smoke_cfg, "byol").train.lr == 0.0042
    assert config.for_method(smoke_cfg, "byol", tuned=False).train.lr == smoke_cfg.train.lr
    assert config.for_method(smoke_cfg, "simclr").train.lr == smoke_cfg.train.lr


def test_tuning_chooses_on_the_valid_split_and_stamps_its_files(smoke_cfg, smoke_store, tmp_path, monkeypatch):
    """Two methods, two settings, one seed: the files hold every run, the mean per setting and,
    per method, the setting with the best mean corpus valid figure; the test split is never embedded."""
    from workbench import embeddings

    monkeypatch.setattr(tuning, "METHODS", {"simclr": None, "vicreg": None})
    monkeypatch.setattr(tuning, "GRID", {"train.lr": ("1e-3", "3e-3")})
    monkeypatch.setattr(tuning, "SEEDS", (0,))
    splits = []
    real = embeddings.extract_embeddings

    def recording(src, store, split, cfg, **kw):
        splits.append(split)
        return real(src, store, split, cfg, **kw)

    monkeypatch.setattr("workbench.validate.extract_embeddings", recording)
    out = tuning.run_tuning(smoke_cfg, out_root=tmp_path, progress=False)
    runs, chosen = pd.read_csv(out / "runs.csv"), pd.read_csv(out / "chosen.csv")
    assert len(runs) == 4 and set(runs.method) == {"simclr", "vicreg"} and "test" not in splits
    settings = pd.read_csv(out / "settings.csv")
    for method, g in settings.groupby("method"):
        assert chosen.set_index("method").loc[method, "setting"] == g.loc[g.valid_mlp_mean.idxmax(), "setting"]
    assert json.loads((out / "stamp.json").read_text())["select_on"] == "valid_mlp"
    with pytest.raises(KeyError):
        runs["test_mlp"]
