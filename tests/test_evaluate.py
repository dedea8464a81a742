"""Probes, limited-data subsets, embedding extraction and the evaluation harness (smoke sizes)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
import torch

from workbench.baselines import LogMelStats
from workbench.config import load_profile
from workbench.embeddings import extract_embeddings, resolve_source
from workbench.metrics import accuracy, tagging_metrics, two_level_resamples
from workbench.probe import check_split, train_probe
from workbench.subsets import limited_data_subsets, load_subsets, save_subsets


def _separable(n, k=4, e=16, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.4).astype(np.uint8)
    w = rng.normal(size=(k, e))
    x = y @ w * 2.0 + rng.normal(size=(n, e)) * 0.5 + 10.0  # offset: standardisation matters
    return x.astype(np.float32), y


@pytest.mark.parametrize("protocol", ["mlp", "linear", "paper-code"])
def test_probe_learns_separable_task(smoke_cfg, protocol):
    x, y = _separable(400)
    cfg = dataclasses.replace(smoke_cfg.probe, max_epochs=30, patience=5, batch_size=32)
    probe = train_probe(x[:200], y[:200], x[200:300], y[200:300], cfg, protocol=protocol)
    assert tagging_metrics(y[300:], probe.predict(x[300:]))["roc_auc"] > 0.95
    again = train_probe(x[:200], y[:200], x[200:300], y[200:300], cfg, protocol=protocol)
    assert np.allclose(probe.predict(x[300:]), again.predict(x[300:]))  # seeded


def test_probe_single_label(smoke_cfg):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    x = (np.eye(3)[y] * 3 + rng.normal(size=(300, 3)) * 0.3).astype(np.float32)
    cfg = dataclasses.replace(smoke_cfg.probe, max_epochs=30, patience=5)
    probe = train_probe(x[:150], y[:150], x[150:200], y[150:200], cfg, task="single_label")
    assert accuracy(y[200:], probe.predict(x[200:])) > 0.9


def test_probe_errors_name_the_split(smoke_cfg):
    x, y = _separable(50)
    with pytest.raises(ValueError, match="train split is empty"):
        train_probe(x[:0], y[:0], x, y, smoke_cfg.probe)
    with pytest.raises(ValueError, match="valid split is single-class"):
        train_probe(x, y, x[:5], np.zeros_like(y[:5]), smoke_cfg.probe)
    with pytest.raises(ValueError, match="train split holds a single class"):
        check_split(np.zeros(10, int), "train", "single_label")
    with pytest.raises(ValueError, match="unknown probe protocol"):
        train_probe(x, y, x, y, dataclasses.replace(smoke_cfg.probe, protocol="svm"))


def test_uniform_subsets_are_uniform_and_nested():
    """The paper's rule: every track equally likely at every fraction (no rare-tag bias)."""
    labels = np.zeros((200, 3), np.uint8)
    labels[:10, 0] = 1  # a rare tag on 5 % of the tracks
    counts = np.zeros(200)
    for seed in range(300):
        sub = limited_data_subsets(labels, (0.05, 0.2, 1.0), draws=1, seed=seed)
        assert set(sub[0.05][0]) <= set(sub[0.2][0]) and len(sub[0.05][0]) == 10
        counts[sub[0.05][0]] += 1
    assert abs(counts[:10].mean() / counts.mean() - 1) < 0.15  # coverage-first would give rare tracks ~2x
    cov = sum(labels[limited_data_subsets(labels, (0.05,), 1, seed=s, rule="coverage")[0.05][0], 0].sum() >= 1
              for s in range(50))
    assert cov == 50
    with pytest.raises(ValueError, match="eval.subset_rule is 'stratified'"):
        limited_data_subsets(labels, (0.05,), 1, rule="stratified")


def test_limited_data_interval_includes_draw_variance():
    rng = np.random.default_rng(0)
    resamples = np.stack([0.7 + 0.01 * rng.standard_normal(1000), 0.8 + 0.01 * rng.standard_normal(1000)])
    pooled = two_level_resamples(resamples, seed=1)
    averaged = resamples.mean(axis=0)  # draw variance averaged away: too narrow
    assert np.percentile(pooled, 97.5) - np.percentile(pooled, 2.5) > 0.08
    assert np.percentile(averaged, 97.5) - np.percentile(averaged, 2.5) < 0.04


def test_two_level_bootstrap_is_the_bootstrap_of_a_mean_over_runs():
    """Closed case: no test-sampling noise (every resample of run g equals x_g), so the two-level
    resamples are the bootstrap of the mean of x over G runs: their mean is x's mean and their
    variance the plug-in variance of x over G. Runs of the same spread, more of them: a narrower interval."""
    rng = np.random.default_rng(0)
    n = 40_000
    widths, base = {}, np.array([0.73, 0.77])
    for runs in (2, 4, 16):
        x = np.tile(base, runs // 2)  # the same spread of runs, more of them
        res = two_level_resamples(np.repeat(x[:, None], n, axis=1), seed=1)
        assert res.mean() == pytest.approx(x.mean(), abs=1e-3)
        assert res.var() == pytest.approx(x.var() / runs, rel=0.05)
        widths[runs] = res.std()
    assert widths[16] < widths[4] < widths[2]
    one = rng.normal(0.7, 0.01, n)
    assert np.array_equal(two_level_resamples(one[None], seed=3), one)  # one run: its own resamples
    # encoders resampled with one seed draw the same runs at each resample (paired draws)
    a = rng.normal(0.7, 0.01, (3, 500))
    assert np.allclose(two_level_resamples(a, seed=5) - two_level_resamples(a - 0.1, seed=5), 0.1)


def test_results_by_tag_family_against_the_floors():
    """A closed case: encoder "good" ranks the style tags perfectly and the tempo tags in reverse,
    "handcrafted" the opposite, "random" is constant (0.5 everywhere): per family the macro ROC-AUC
    is 1, 0 or 0.5 exactly, and the paired differences to the floors are their differences."""
    from types import SimpleNamespace

    from workbench.evaluate import family_table

    rng = np.random.default_rng(0)
    y = (rng.random((60, 4)) < 0.5).astype(np.uint8)
    y[0], y[1] = 1, 0  # every tag has both classes
    store = SimpleNamespace(tag_names=["rock", "jazz", "slow", "fast"],
                            tag_families={"style": ["rock", "jazz"], "tempo": ["slow", "fast"]})
    good = np.concatenate([y[:, :2], 1 - y[:, 2:]], axis=1).astype(float)
    scores = {"good": good, "handcrafted": 1 - good, "random": np.full(y.shape, 0.5)}
    cfg = dataclasses.replace(load_profile("smoke"), eval=dataclasses.replace(load_profile("smoke").eval,
                                                                             bootstrap_resamples=200))
    table = family_table(store, y, scores, cfg).set_index(["family", "method", "metric"])
    auc = table.xs("roc_auc", level="metric")
    assert auc.point.to_dict() == {("style", "good"): 1.0, ("style", "handcrafted"): 0.0, ("style", "random"): 0.5,
                                   ("tempo", "good"): 0.0, ("tempo", "handcrafted"): 1.0, ("tempo", "random"): 0.5}
    assert auc.loc[("style", "good"), "diff_handcrafted"] == 1.0 and auc.loc[("style", "good"), "diff_random"] == 0.5
    good_style = auc.loc[("style", "good")]
    assert (good_style.diff_handcrafted_ci_low, good_style.diff_handcrafted_ci_high) == (1.0, 1.0)
    assert set(table.reset_index().tags) == {2}


def test_limited_data_subsets_reproducible_nested_covering(tmp_path):
    rng = np.random.default_rng(0)
    labels = (rng.random((500, 30)) < rng.uniform(0.005, 0.2, 30)).astype(np.uint8)
    fr = (0.01, 0.05, 0.1, 0.2, 1.0)
    a = limited_data_subsets(labels, fr, draws=4, seed=3, rule="coverage")
    b = limited_data_subsets(labels, fr, draws=4, seed=3, rule="coverage")
    c = limited_data_subsets(labels, fr, draws=4, seed=4, rule="coverage")
    assert all(np.array_equal(x, y) for f in fr for x, y in zip(a[f], b[f]))
    assert not np.array_equal(a[0.05][0], c[0.05][0])
    assert len(a[1.0]) == 1 and np.array_equal(a[1.0][0], np.arange(500))
    for d in range(4):
        assert len(a[0.01][d]) == 5 and len(a[0.2][d]) == 100
        for small, big in zip(fr[:-1], fr[1:]):  # nested within a draw
            assert set(a[small][d]) <= set(big_ for big_ in (a[big][0] if big == 1.0 else a[big][d]))
        # every tag with a positive in train is represented once the subset is big enough
        assert (labels[a[0.1][d]].sum(0) > 0).sum() == (labels.sum(0) > 0).sum()
    assert len({tuple(a[0.05][d]) for d in range(4)}) == 4  # draws differ
    path = save_subsets(tmp_path / "subsets.json", a, np.arange(1000, 1500), seed=3)
    back = load_subsets(path)
    assert np.array_equal(back[0.05][2], a[0.05][2] + 1000)


def test_extract_embeddings_chunks_pool_and_cache(smoke_cfg, smoke_store):
    src = resolve_source(LogMelStats(), smoke_cfg, name="handcrafted-test")
    t0 = time.perf_counter()
    emb = extract_embeddings(src, smoke_store, "valid", smoke_cfg, keep_chunks=True, progress=False)
    first = time.perf_counter() - t0
    idx = smoke_store.indices("valid")
    seg = smoke_cfg.audio.segment_samples
    n_chunks = np.maximum(np.asarray(smoke_store.lengths)[idx] // seg, 1)
    assert emb.track.shape == (len(idx), 2 * smoke_cfg.audio.n_mels)
    assert np.array_equal(emb.indices, idx)
    assert np.array_equal(np.bincount(emb.chunk_track), n_chunks)
    assert np.allclose(emb.track[0], emb.chunks[emb.chunk_track == 0].mean(0), atol=1e-5)
    t0 = time.perf_counter()
    again = extract_embeddings(src, smoke_store, "valid", smoke_cfg, progress=False)
    assert np.array_equal(again.track, emb.track) and time.perf_counter() - t0 < max(first, 0.5)


def test_extract_embeddings_of_an_encoder_module(smoke_cfg, smoke_store):
    from workbench.encoder import build_encoder

    torch.manual_seed(0)
    enc = build_encoder(smoke_cfg.encoder, smoke_cfg.audio)
    emb = extract_embeddings(enc, smoke_store, "test", smoke_cfg, progress=False)
    assert emb.track.shape == (len(smoke_store.indices("test")), smoke_cfg.encoder.output_dim)
    assert np.isfinite(emb.track).all()


def test_paper_code_segments(smoke_cfg, smoke_store):
    from workbench.embeddings import extract_segments

    src = resolve_source(LogMelStats(), smoke_cfg, name="segments-test")
    emb, owner = extract_segments(src, smoke_store, "valid", smoke_cfg, progress=False)
    n = len(smoke_store.indices("valid"))
    assert emb.shape == (len(owner), 2 * smoke_cfg.audio.n_mels)
    assert owner.min() >= 0 and owner.max() < n
    assert np.bincount(owner, minlength=n).max() <= smoke_cfg.probe.segments_per_track
    again, owner2 = extract_segments(src, smoke_store, "valid", smoke_cfg, progress=False)
    assert np.array_equal(owner, owner2) and np.allclose(emb, again)


def test_run_evaluation_writes_report(smoke_cfg, smoke_store, tmp_path):
    from workbench.evaluate import run_evaluation

    torch.manual_seed(0)
    cfg = dataclasses.replace(smoke_cfg, eval=dataclasses.replace(smoke_cfg.eval, baselines=("handcrafted",),
                                                                  bootstrap_resamples=50, fractions=(0.5, 1.0)))
    enc = LogMelStats()
    enc.name = "simclr"  # a stand-in "method" so the harness runs without pretraining
    out = run_evaluation(cfg, [enc], out_dir=tmp_path / "report", progress=False)
    import pandas as pd

    table = pd.read_csv(out / "results.csv")
    assert set(table.method) == {"simclr", "handcrafted"}
    assert set(table.fraction) == set(cfg.eval.fractions) | {1.0}
    assert {"point", "mean", "ci_low", "ci_high", "n_undefined_tags", "checkpoint", "config_hash"} <= set(table.columns)
    assert (table.ci_low <= table.ci_high).all()
    for name in ("report.md", "results.md", "pairs.csv", "limited.csv", "bootstrap.npz", "subsets.json",
                 "fig1_dots.png", "fig2_limited.png", "paired_differences.png"):
        assert (out / name).exists(), name
    # the embedded corpus also scores the same predictions against its clean tags
    clean = pd.read_csv(out / "results_clean.csv")
    assert set(clean.method) == {"simclr", "handcrafted"} and set(clean.labels) == {"clean"}
    assert "clean tags" in (out / "report.md").read_text()
    weak = table[(table.fraction == 1.0) & (table.metric == "roc_auc")].set_index("method").point
    got = clean[clean.metric == "roc_auc"].set_index("method").point
    assert not np.allclose(got.sort_index().values, weak.sort_index().values)  # other targets, other scores
    assert (clean.ci_low <= clean.ci_high).all()


def test_supervised_baseline_sees_only_the_draws_labels(smoke_cfg, smoke_store, monkeypatch):
    """In the limited-data curves the supervised encoder is retrained on each draw's tracks: the
    labels it is fitted on are exactly those of the draw (not the whole train split)."""
    from workbench import baselines, evaluate

    cfg = dataclasses.replace(smoke_cfg, eval=dataclasses.replace(smoke_cfg.eval, supervised_epochs=1))
    seen = []
    real = baselines.check_split

    def spy(y, name):
        if "supervised" in name:
            seen.append(np.asarray(y).copy())
        return real(y, name)

    monkeypatch.setattr(baselines, "check_split", spy)
    _, y_train = smoke_store.split_labels("train")
    subsets = limited_data_subsets(y_train, (0.5, 1.0), draws=2, seed=3)
    full = baselines.baseline_source("supervised", cfg, smoke_store)
    scores = evaluate.probe_scores(full, smoke_store, cfg, subsets, progress=False)
    assert set(scores) == {(0.5, 0), (0.5, 1), (1.0, 0)}
    fitted = [y for y in seen if len(y) < len(y_train)]
    assert len(fitted) == 2  # one encoder per draw below 100 %
    for y, pos in zip(fitted, subsets[0.5]):
        assert np.array_equal(y, y_train[pos])
    n_test = len(smoke_store.indices("test"))
    assert all(s.shape == (n_test, y_train.shape[1]) and np.isfinite(s).all() for s in scores.values())


def test_supervised_baseline_keeps_the_best_validation_epoch(smoke_cfg, smoke_store, monkeypatch, tmp_path):
    """The supervised encoder returned is the one of the epoch with the best validation score."""
    from workbench import baselines, encoder as encoder_module

    monkeypatch.setenv("WORKBENCH_DATA", str(tmp_path))  # a fresh cache: this test must train
    held, snapshots = [], []
    real_build = encoder_module.build_encoder

    def build(*a, **k):
        held.append(real_build(*a, **k))
        return held[-1]

    scores = iter([0.55, 0.9, 0.6])

    def score(task, y, s):
        snapshots.append({k: v.clone() for k, v in held[-1].state_dict().items()})
        return next(scores)

    monkeypatch.setattr(baselines, "build_encoder", build)
    monkeypatch.setattr(baselines, "validation_score", score)
    cfg = dataclasses.replace(smoke_cfg,
                              eval=dataclasses.replace(smoke_cfg.eval, supervised_epochs=3, baseline_seed=11))
    src = baselines.baseline_source("supervised", cfg, smoke_store)
    assert len(snapshots) == 3
    got = src.encoder.state_dict()
    assert all(torch.equal(got[k], snapshots[1][k]) for k in got)
    assert not all(torch.equal(got[k], snapshots[2][k]) for k in got if got[k].is_floating_point())


def test_random_baseline_batchnorm_is_calibrated_on_pretraining_audio(smoke_cfg, smoke_store):
    """The random-init floor normalises with statistics of real inputs: each BatchNorm's running
    mean and variance are those of its input over the calibration batches (here checked on the
    stem's first BatchNorm against a direct computation), not the initial 0 / 1."""
    from workbench.baselines import baseline_source, calibrate_batchnorm
    from workbench.encoder import build_encoder

    src = baseline_source("random", smoke_cfg, smoke_store)
    bn = [m for m in src.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert not src.encoder.training and bn.running_mean.abs().max() > 1e-3
    assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))

    torch.manual_seed(0)
    enc = build_encoder(smoke_cfg.encoder, smoke_cfg.audio)
    x = torch.randn(6, 1, smoke_cfg.audio.n_mels, smoke_cfg.audio.n_frames) * 10 - 40
    calibrate_batchnorm(enc, [x[:3], x[3:]])
    with torch.no_grad():
        h = enc.conv1(x)  # the stem's first convolution feeds bn1
        out = enc.bn1(h)
    torch.testing.assert_close(enc.bn1.running_mean, (h[:3].mean((0, 2, 3)) + h[3:].mean((0, 2, 3))) / 2,
                               rtol=1e-4, atol=1e-4)
    assert out.mean((0, 2, 3)).abs().max() < 0.2 and enc.bn1.momentum == 0.1  # centred; momentum restored


def test_the_random_floor_is_calibrated_both_ways_on_another_set(smoke_cfg, smoke_store):
    """On another evaluated set (the transfer set), ``random`` keeps the BatchNorm statistics of the
    pretraining corpus, as the SSL encoders do, and ``random-target`` recalibrates them on the
    evaluated set's audio; each says so in its description."""
    from workbench.baselines import baseline_source
    from workbench.evaluate import transfer_config

    on_corpus = baseline_source("random", smoke_cfg, smoke_store)
    transfer = transfer_config(smoke_cfg)
    assert transfer.eval.pretrain_dataset == "synth" and transfer.data.dataset == "transfer"
    assert transfer.eval.baselines == (*smoke_cfg.eval.baselines, "random-target")
    # the evaluated store is not read for "random" when the pretraining corpus is named
    same = baseline_source("random", dataclasses.replace(smoke_cfg, eval=transfer.eval), None)
    assert same.checkpoint_hash == on_corpus.checkpoint_hash and "pretraining views" in same.checkpoint
    target = baseline_source("random-target", smoke_cfg, smoke_store)
    assert "evaluated set (synth)" in target.checkpoint
    assert target.checkpoint_hash == on_corpus.checkpoint_hash  # the corpus evaluated on itself: the same floor


def test_seed_configs_spread_and_labels(smoke_cfg):
    import pandas as pd

    from workbench.embeddings import EncoderSource
    from workbench.evaluate import seed_configs, seed_spread, source_labels
    from workbench.methods import METHODS

    cfg = dataclasses.replace(smoke_cfg, eval=dataclasses.replace(smoke_cfg.eval, seeds=3))
    runs = seed_configs(cfg)
    assert [(c.method.name, c.train.seed) for c in runs[:3]] == [("simclr", 0), ("simclr", 1), ("simclr", 2)]
    assert len(runs) == 3 * len(METHODS)

    def src(name, fidelity="reference", variant="", seed=0):
        return EncoderSource(name, fidelity, None, smoke_cfg.audio, "", "", "", variant, seed)

    assert source_labels([src("simclr"), src("simclr", seed=1), src("byol", variant="ema0-nopredictor"),
                    src("dino", "paper-code"), src("random", "n/a", seed=None)]) == \
        ["simclr", "simclr@s1", "byol[ema0-nopredictor]", "dino/paper-code", "random"]

    rows = [dict(method=m, fraction=1.0, metric="roc_auc", point=p, ci_low=p - 0.02, ci_high=p + 0.02)
            for m, p in (("simclr", 0.80), ("simclr@s1", 0.82), ("simclr@s2", 0.78), ("random", 0.70))]
    rows.append(dict(method="simclr", fraction=0.5, metric="roc_auc", point=0.1, ci_low=0.0, ci_high=0.2))
    arrays = {f"1.0|roc_auc|{r['method']}": np.full(400, r["point"]) for r in rows[:4]}  # no test noise
    spread = seed_spread(pd.DataFrame(rows), arrays)
    assert list(spread.method) == ["simclr"]  # one seed only: not listed
    row = spread.iloc[0]
    assert row.seeds == 3 and row.mean_over_seeds == pytest.approx(0.80) and row.seed_std == pytest.approx(0.02)
    assert (row.seed_min, row.seed_max, row.first_seed_ci_low) == (0.78, 0.82, pytest.approx(0.78))
    # the interval of the mean of three seeds: inside the seeds' range, wider than no spread at all
    assert 0.78 <= row.ci_low < 0.80 < row.ci_high <= 0.82
    assert seed_spread(pd.DataFrame(rows[3:]), arrays) is None


def test_an_existing_report_is_reused_only_while_current(tmp_path, smoke_cfg):
    """Notebooks read the demo's report instead of evaluating again, but only when it was made
    with the same config from these runs' current checkpoints."""
    import json
    import os

    import pandas as pd

    from workbench.config import apply_overrides, to_dict
    from workbench.evaluate import existing_report

    runs = [tmp_path / "runs" / name for name in ("a", "b")]
    for run in runs:
        run.mkdir(parents=True)
        (run / "checkpoint.pt").write_bytes(b"weights")
        os.utime(run / "checkpoint.pt", (1_000, 1_000))
    out = tmp_path / "report"
    out.mkdir()
    (out / "config.json").write_text(json.dumps(to_dict(smoke_cfg), indent=2))
    pd.DataFrame({"checkpoint": [str(r / "checkpoint.pt") for r in runs] + ["log-mel"]}).to_csv(out / "results.csv")
    os.utime(out / "results.csv", (2_000, 2_000))
    assert existing_report(smoke_cfg, runs, out) == out
    assert existing_report(apply_overrides(smoke_cfg, ["probe.max_epochs=7"]), runs, out) is None  # other config
    assert existing_report(smoke_cfg, runs + [tmp_path / "runs" / "c"], out) is None  # a run not scored
    os.utime(runs[1] / "checkpoint.pt", (3_000, 3_000))  # retrained after the report
    assert existing_report(smoke_cfg, runs, out) is None
    assert existing_report(smoke_cfg, runs, tmp_path / "nothing") is None


def test_encoders_probed_side_by_side_score_as_one_after_another(smoke_cfg, smoke_store, monkeypatch, capsys):
    """With ``train.threads`` set, `all_probe_scores` probes the encoders in spawned processes
    (2 cores: two at a time), each reopening the store; its scores equal the in-process ones at
    the same threads, source by source and draw by draw, in the sources' order (the second call
    reads the embeddings the first cached: what differs is where the probes train). The
    supervised baseline, listed last, is started first (it retrains for every draw) and its
    scores still come back in its place."""
    from workbench.baselines import baseline_source
    from workbench.evaluate import all_probe_scores
    from workbench.probe import targets, task_of

    cfg = dataclasses.replace(smoke_cfg, train=dataclasses.replace(smoke_cfg.train, threads=1))
    sources = [baseline_source(b, cfg, smoke_store) for b in ("handcrafted", "random", "supervised")]
    _, y = smoke_store.split_labels("train")
    subsets = limited_data_subsets(targets(y, task_of(smoke_store)), (0.5, 1.0), 2, 0)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1}, raising=False)
    side = all_probe_scores(sources, smoke_store, cfg, subsets, progress=False)
    assert "probing 3 encoders, 2 at a time (1 thread each)" in capsys.readouterr().out
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0}, raising=False)
    alone = all_probe_scores(sources, smoke_store, cfg, subsets, progress=False)
    assert "probing" not in capsys.readouterr().out
    for a, b in zip(side, alone):
        assert a.keys() == b.keys() == {(0.5, 0), (0.5, 1), (1.0, 0)}
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_validation_table_never_embeds_the_test_split(smoke_cfg, smoke_store, monkeypatch):
    """`python -m workbench validate`: valid-split figures of each encoder and baseline, on the
    embedded corpus and the transfer set, and no test embedding computed anywhere."""
    import workbench.validate as ev
    from workbench.metrics import knn_probe_auc
    from workbench.probe import targets

    splits = []

    def recording(src, store, split, cfg, **kw):
        splits.append(split)
        return extract_embeddings(src, store, split, cfg, **kw)

    monkeypatch.setattr(ev, "extract_embeddings", recording)
    cfg = dataclasses.replace(smoke_cfg,
                              eval=dataclasses.replace(smoke_cfg.eval, baselines=("handcrafted", "supervised")))
    enc = LogMelStats()
    enc.name = "simclr"
    table = ev.validation_table(cfg, [enc], progress=False)
    assert list(table.encoder) == ["simclr", "handcrafted"]  # supervised is trained on labels: not a floor here
    assert list(table.columns) == ["encoder", "run", "valid_mlp", "valid_knn", "transfer_valid_mlp",
                                   "transfer_valid_knn"]
    assert set(splits) == {"train", "valid"} and len(splits) == 2 * 2 * 2
    # the figures are the cross-validated probe (epoch chosen on one half of valid, read on the
    # other, both ways) and the k-NN probe, recomputed here
    emb = {s: extract_embeddings(enc, smoke_store, s, cfg, progress=False) for s in ("train", "valid")}
    y = {s: targets(smoke_store.labels[emb[s].indices], "multi_label") for s in emb}
    order = np.random.default_rng([cfg.probe.seed, 17]).permutation(len(y["valid"]))
    a, b = np.sort(order[::2]), np.sort(order[1::2])
    figures = []
    for stop, read in ((a, b), (b, a)):
        probe = train_probe(emb["train"].track, y["train"], emb["valid"].track[stop], y["valid"][stop], cfg.probe,
                            n_outputs=smoke_store.labels.shape[1])
        figures.append(tagging_metrics(y["valid"][read], probe.predict(emb["valid"].track[read]))["roc_auc"])
    assert table.valid_mlp[0] == pytest.approx(np.mean(figures))
    assert table.valid_knn[0] == pytest.approx(knn_probe_auc(torch.from_numpy(emb["train"].track), y["train"],
                                                             torch.from_numpy(emb["valid"].track), y["valid"]))
    assert table.valid_mlp[0] == pytest.approx(table.valid_mlp[1])  # the stand-in is the log-mel baseline itself
    assert table.transfer_valid_mlp.between(0, 1).all() and table.valid_knn.between(0, 1).all()
