"""Equal tuning (`workbench.tuning`): one grid and the same seeds for every method, settings chosen
on the valid split only, and the chosen settings applied through `config.TUNED`."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from workbench import config, tuning
from workbench.methods import METHODS
from workbench.runs import runs_dir


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


def test_input_study_writes_time_to_accuracy_with_each_inputs_floors(smoke_cfg, smoke_store, tmp_path, monkeypatch):
    """Two inputs (the paper's, and 2 s x 64 bins cut on the frame grid), one at two step counts:
    one row per run with its training seconds (its clips over its clips/s, summed by hand here)
    and valid figures, each input's floors once, the figure and the stamp; no test embedding."""
    from workbench import embeddings

    monkeypatch.setattr(tuning, "INPUTS", {
        "4 s x 128, 2 steps": ("train.steps=2",), "4 s x 128, 4 steps": ("train.steps=4",),
        "2 s x 64, 4 steps": ("train.steps=4", "audio.n_mels=64", "audio.segment_seconds=2.0", "views.crop=frames")})
    splits = []
    real = embeddings.extract_embeddings
    monkeypatch.setattr("workbench.validate.extract_embeddings",
                        lambda src, store, split, cfg, **kw: splits.append(split) or real(src, store, split, cfg, **kw))
    out = tuning.run_input_study(smoke_cfg, out_root=tmp_path, progress=False)
    table = pd.read_csv(out / "runs.csv")
    runs, floors = table[table.steps.notna()], table[table.steps.isna()]
    assert list(runs.input) == list(tuning.INPUTS) and list(runs.steps) == [2, 4, 4] and "test" not in splits
    assert sorted(floors.family) == sorted(["4 s x 128"] * 3 + ["2 s x 64"] * 3)  # once per input
    assert set(floors.encoder) == {"random", "handcrafted", "random-target"}
    small = floors[floors.family == "2 s x 64"].set_index("encoder")
    big = floors[floors.family == "4 s x 128"].set_index("encoder")
    assert small.loc["handcrafted", "valid_mlp"] != big.loc["handcrafted", "valid_mlp"]  # each at its own input
    for _, r in runs.iterrows():
        rows = [json.loads(line) for line in (runs_dir() / r.run / "metrics.jsonl").read_text().splitlines()]
        steps = [x for x in rows if x["kind"] == "train"]
        cfg = json.loads((runs_dir() / r.run / "config.json").read_text())
        clips = cfg["train"]["batch_size"] * cfg["views"]["n_views"] * cfg["train"]["log_every"]
        assert r.train_seconds == pytest.approx(sum(clips / x["clips_per_s"] for x in steps), rel=1e-9)
    assert (out / "time_to_accuracy.png").stat().st_size > 0
    assert json.loads((out / "stamp.json").read_text())["method"] == "simclr"
