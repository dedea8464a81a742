"""Collapse diagnostics: known values on constructed embeddings, the monitor's thresholds, and
the monitor on real smoke runs (DINO without centering collapses, a healthy run does not)."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from workbench.config import DiagnosticsConfig
from workbench.diagnostic_plots import segment_similarity_by_distance
from workbench.diagnostics import (
    CollapseMonitor,
    alignment,
    dino_stats,
    effective_rank,
    embedding_std,
    entropy,
    mean_cosine_between,
    singular_values,
    uniformity,
)


def gaussian(n: int = 20_000, d: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------- embeddings
def test_constant_embeddings_are_collapsed() -> None:
    z = torch.tensor([[0.3, -1.0, 2.0, 0.5]]).repeat(64, 1)
    assert embedding_std(z) == pytest.approx(0.0, abs=1e-7)
    assert effective_rank(z) == pytest.approx(1.0, abs=1e-3)
    assert mean_cosine_between(z) == pytest.approx(1.0, abs=1e-6)
    assert uniformity(z) == pytest.approx(0.0, abs=1e-6)


def test_isotropic_gaussian_is_spread() -> None:
    d = 32
    z = gaussian(d=d)
    # each coordinate of a uniform point on the sphere has variance 1/D
    assert embedding_std(z) == pytest.approx(1 / math.sqrt(d), rel=0.02)
    assert effective_rank(z) > 0.95 * d
    assert abs(mean_cosine_between(z[:2000])) < 0.01
    # Wang & Isola: E exp(-2 |u - v|^2) on the sphere tends to exp(-4) as D grows
    assert -4.0 < uniformity(z[:2000]) < -3.0


def test_effective_rank_counts_directions() -> None:
    """k equal, orthogonal directions: RankMe = k exactly (uniform singular values)."""
    eye = torch.eye(8)
    z = torch.cat([eye[:3]] * 10)  # rows along 3 axes, each 10 times
    assert effective_rank(z) == pytest.approx(3.0, rel=1e-4)
    s = singular_values(z)
    assert s.shape == (8,) and np.all(np.diff(s) <= 1e-9)
    assert np.allclose(s[:3], math.sqrt(10)) and np.allclose(s[3:], 0, atol=1e-9)


def test_centred_spectrum_drops_only_the_dimension_centring_removes() -> None:
    """N centred rows span N - 1 dimensions: with N <= D the centred spectrum has N - 1 values,
    all positive for Gaussian rows (no artefact cliff); with N > D it keeps all D."""
    few = gaussian(n=16, d=32, seed=2)
    s = singular_values(few, center=True)
    assert s.shape == (15,) and s.min() > 1e-3 * s.max()
    full = torch.linalg.svdvals(few.double() - few.double().mean(0)).numpy()
    assert full[-1] < 1e-9 and np.allclose(s, full[:15])
    assert singular_values(gaussian(n=64, d=8, seed=3), center=True).shape == (8,)


def test_effective_rank_matches_reference_formula() -> None:
    z = gaussian(n=50, d=10, seed=1) @ torch.diag(torch.linspace(0.1, 3, 10))
    s = np.linalg.svd(z.double().numpy(), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert effective_rank(z) == pytest.approx(float(np.exp(-(p * np.log(p)).sum())), rel=1e-9)


def test_alignment() -> None:
    z = gaussian(n=100, d=16)
    assert alignment(z, z) == pytest.approx(0.0, abs=1e-10)
    assert alignment(z, 3.0 * z) == pytest.approx(0.0, abs=1e-10)  # scale-free: L2-normalised
    assert alignment(z, -z) == pytest.approx(4.0, rel=1e-6)  # antipodal: |u - (-u)|^2 = 4
    with pytest.raises(ValueError, match=r"\(100, 16\)"):
        alignment(z, z[:50])


def test_mean_cosine_between_excludes_same_track() -> None:
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([a, a, b, b])
    assert mean_cosine_between(z, groups=[0, 0, 1, 1]) == pytest.approx(0.0)
    assert mean_cosine_between(z) == pytest.approx(1 / 3)  # 4 of 12 ordered pairs identical


def test_shape_errors_name_the_shape() -> None:
    with pytest.raises(ValueError, match=r"\(3, 4, 5\)"):
        embedding_std(torch.zeros(3, 4, 5))


# ----------------------------------------------------------------------------------- DINO
def test_entropy_known_values() -> None:
    K = 64
    assert float(entropy(torch.full((K,), 1 / K))) == pytest.approx(math.log(K), rel=1e-6)
    assert float(entropy(torch.nn.functional.one_hot(torch.tensor(3), K).float())) == pytest.approx(0.0, abs=1e-6)


def _targets(teacher_logits, center, teacher_temp=0.04):
    from workbench.losses import dino_targets

    return dino_targets(teacher_logits, center, teacher_temp)


def test_dino_stats_uniform_teacher() -> None:
    """Constant teacher logits: uniform teacher, entropy ln K, CE = ln K when the student is uniform too."""
    B, K = 16, 32
    f = dino_stats(torch.zeros(B, K), _targets(torch.zeros(B, K), torch.zeros(1, K)), 0.1, torch.zeros(1, K))
    assert f["teacher_entropy"] == pytest.approx(math.log(K), rel=1e-6)
    assert f["teacher_batch_entropy"] == pytest.approx(math.log(K), rel=1e-6)
    assert f["ce"] == pytest.approx(math.log(K), rel=1e-6)
    assert f["kl"] == pytest.approx(0.0, abs=1e-5)
    assert f["ln_k"] == pytest.approx(math.log(K))


def test_dino_stats_one_hot_teacher() -> None:
    """Every sample on prototype 5 (one-prototype collapse): entropies 0, one prototype used."""
    B, K = 16, 32
    logits = torch.zeros(B, K)
    logits[:, 5] = 10.0
    student = torch.randn(B, K, generator=torch.Generator().manual_seed(0))
    center = torch.full((1, K), 0.5)
    f = dino_stats(student, _targets(logits, center), 0.1, center)
    assert f["teacher_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert f["teacher_batch_entropy"] == pytest.approx(0.0, abs=1e-6)
    assert f["teacher_prototypes_used"] == 1
    assert f["center_norm"] == pytest.approx(0.5 * math.sqrt(K))
    # CE against a one-hot teacher is the student's -log s_5; KL = CE - H(t) = CE
    expected = float(-torch.log_softmax(student / 0.1, -1)[:, 5].mean())
    assert f["ce"] == pytest.approx(expected, rel=1e-5) and f["kl"] == pytest.approx(expected, rel=1e-5)


def test_dino_stats_ce_matches_loss() -> None:
    from workbench.losses import dino_loss

    g = torch.Generator().manual_seed(2)
    s, t, c = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g), torch.randn(1, 16, generator=g)
    f = dino_stats(s, _targets(t, c), 0.1, c)
    assert f["ce"] == pytest.approx(float(dino_loss(s, t, c, 0.1, 0.04)[0]), rel=1e-5)
    assert f["kl"] >= 0


def test_sinkhorn_mode_diagnostics_read_the_sinkhorn_targets(smoke_cfg) -> None:
    """With Sinkhorn-Knopp on, the teacher statistics are those of the balanced assignment the
    loss learns from, not of a softmax of the teacher with a zero centre."""
    from dataclasses import replace

    from workbench.diagnostics import entropy
    from workbench.losses import dino_targets, sinkhorn_knopp
    from workbench.methods import build_method

    cfg = replace(smoke_cfg, method=replace(smoke_cfg.method, name="dino", sinkhorn_iterations=3))
    dino = build_method(cfg).eval()
    g = torch.Generator().manual_seed(0)
    views = [torch.randn(8, 1, cfg.audio.n_mels, cfg.audio.n_frames, generator=g) * 10 - 40 for _ in range(2)]
    with torch.no_grad():
        stats = dino.stats(views)
        _, teacher = dino.logits(torch.cat(views))
    temp = dino.teacher_temp(dino.step)
    balanced = sinkhorn_knopp(teacher, temp, 3)
    softmax = dino_targets(teacher, torch.zeros(1, teacher.shape[1]), temp)
    assert stats["dino_teacher_batch_entropy"] == pytest.approx(float(entropy(balanced.mean(0))), rel=1e-4)
    assert stats["dino_teacher_entropy"] == pytest.approx(float(entropy(balanced).mean()), rel=1e-4)
    assert abs(float(entropy(softmax).mean()) - stats["dino_teacher_entropy"]) > 1e-3
    assert stats["dino_center_norm"] == 0.0


# ----------------------------------------------------------------------------------- monitor
def test_monitor_fires_on_constructed_collapse(capsys) -> None:
    cfg = DiagnosticsConfig()
    mon = CollapseMonitor(cfg, "unit-run")
    D, K = 64, 128
    collapsed = {"proj_dim": D, "proj_std": 0.001, "proj_rank": 1.01, "embed_dim": D, "embed_std": 0.5 / 8,
                 "embed_rank": 20.0, "dino_ln_k": math.log(K), "dino_ce": math.log(K) - 0.01,
                 "dino_teacher_entropy": math.log(K) - 0.01, "dino_teacher_batch_entropy": math.log(K)}
    found = mon.check(7, collapsed)
    assert {w["stat"] for w in found} == {"proj_std", "proj_rank", "dino_ce", "dino_teacher_entropy"}
    for w in found:
        assert w["run"] == "unit-run" and w["step"] == 7 and set(w) >= {"value", "threshold", "message"}
    out = capsys.readouterr().out
    assert "unit-run" in out and "step 7" in out and "proj_std" in out

    one_hot = {"dino_ln_k": math.log(K), "dino_ce": 0.01, "dino_teacher_entropy": 0.0,
               "dino_teacher_batch_entropy": 0.001}
    assert [w["stat"] for w in mon.check(8, one_hot)] == ["dino_teacher_batch_entropy"]


def test_monitor_quiet_on_healthy_figures() -> None:
    mon = CollapseMonitor(DiagnosticsConfig(), "healthy")
    D, K = 64, 128
    healthy = {"proj_dim": D, "proj_std": 0.7 / math.sqrt(D), "proj_rank": 12.0, "embed_dim": D,
               "embed_std": 0.5 / math.sqrt(D), "embed_rank": 9.0, "dino_ln_k": math.log(K), "dino_ce": 2.5,
               "dino_teacher_entropy": 0.3, "dino_teacher_batch_entropy": 3.0}  # sharp per sample: healthy
    assert mon.check(1, healthy) == []


def test_segment_similarity_by_distance() -> None:
    # one track, 3 chunks: 0 and 1 identical, 2 orthogonal
    chunks = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    df = segment_similarity_by_distance(chunks, np.zeros(3, int), 4.0)
    assert df["distance_s"].tolist() == [4.0, 8.0]
    assert df["mean"].tolist() == pytest.approx([0.5, 0.0])
    assert df["pairs"].tolist() == [2, 1]


# ----------------------------------------------------------------------------------- trainer
def test_compute_diagnostics_leaves_the_method_untouched(smoke_cfg) -> None:
    from workbench.diagnostics import compute_diagnostics
    from workbench.methods import build_method

    cfg = replace(smoke_cfg, method=replace(smoke_cfg.method, name="dino"))
    torch.manual_seed(0)
    method = build_method(cfg).train()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    views = [torch.randn(8, 1, cfg.audio.n_mels, cfg.audio.n_frames) for _ in range(2)]
    stats = compute_diagnostics(method, views)
    assert method.training and all(m.training for m in method.modules())
    after = method.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "diagnostics changed a parameter or buffer"
    for key in ("embed_std", "embed_rank", "proj_std", "proj_alignment", "dino_teacher_entropy", "dino_kl",
                "dino_center_norm", "sched_teacher_temp", "sched_momentum"):
        assert key in stats and isinstance(stats[key], float) and math.isfinite(stats[key]), key
    assert stats["embed_dim"] == cfg.encoder.output_dim


def _flags(run_dir) -> set[str]:
    from workbench.diagnostics import read_warnings

    return {w["stat"] for w in read_warnings(run_dir)}


def test_healthy_smoke_run_is_quiet(smoke_cfg) -> None:
    """A default smoke DINO run writes every stat; a healthy SimCLR run of 40 steps at a high
    learning rate (1e-2), checked 8 times, raises no collapse warning at all and its online probe
    reads the tags above chance (0.72 macro ROC-AUC here; 0.5 for an embedding that knows
    nothing)."""
    from workbench.jobs import ensure_run
    from workbench.runs import read_metrics

    run = ensure_run(replace(smoke_cfg, method=replace(smoke_cfg.method, name="dino")), progress=False)
    rows = read_metrics(run).query("kind == 'diagnostics'")
    assert len(rows) >= 2 and {"embed_std", "proj_rank", "dino_kl", "sched_teacher_temp"} <= set(rows.columns)
    assert rows["probe_knn_auc"].between(0.0, 1.0).all() and rows["embed_lidar"].gt(0).all()

    train = replace(smoke_cfg.train, steps=40, lr=1e-2, warmup_steps=2, checkpoint_every=40, log_every=5)
    healthy = ensure_run(replace(smoke_cfg, train=train, diagnostics=replace(smoke_cfg.diagnostics, every=5)),
                         progress=False)
    rows = read_metrics(healthy).query("kind == 'diagnostics'")
    assert len(rows) == 8 and _flags(healthy) == set()
    assert rows["probe_knn_auc"].iloc[-1] > 0.6


def test_dino_collapses_in_both_modes_and_the_twin_with_both_stays_healthy(smoke_cfg) -> None:
    """Notebook 03's trio (DINO Fig. 7), in the smoke profile (one thread a run; measured: target
    entropy 0.96 ln K, KL 0.040 | batch entropy 0.148 ln K, KL flagged at step 16 | lowest KL
    0.201, nothing flagged): centering alone ends near uniform (targets' entropy over 0.9 ln K)
    and the monitor flags its KL; sharpening alone puts the batch on few prototypes (batch-mean
    entropy under 0.2 ln K) and the monitor flags its KL; with both, nothing is flagged and the
    KL never comes within twice the lowest KL of either collapsed run."""
    from workbench.config import collapse_configs
    from workbench.diagnostic_plots import dino_collapse_table
    from workbench.jobs import ensure_runs

    trio = {k: c for k, c in collapse_configs(smoke_cfg).items() if k.startswith("dino")}
    table = dino_collapse_table(dict(zip(trio, ensure_runs(list(trio.values()), progress=False))))
    both, centre, sharp = (table.loc[k] for k in ("dino", "dino-centering-only", "dino-sharpening-only"))
    assert centre["target entropy / ln K"] > 0.9 and "dino_kl" in centre["first flagged"]
    assert sharp["batch entropy / ln K"] < 0.2 and "dino_kl" in sharp["first flagged"]
    assert both["first flagged"] == "" and both["lowest KL"] > 2 * max(centre["lowest KL"], sharp["lowest KL"])


def test_lidar_counts_the_directions_that_separate_samples():
    """k directions of spread between samples, small noise between views: LiDAR close to k. Two
    of those directions made as noisy between views as between samples: LiDAR counts the two
    others only, where RankMe of one view still counts all four."""
    from workbench.diagnostics import effective_rank, lidar

    g = torch.Generator().manual_seed(0)
    n, d, k = 400, 16, 4
    centres = torch.zeros(n, d)
    centres[:, :k] = torch.randn(n, k, generator=g)
    views = [centres + 0.05 * torch.randn(n, d, generator=g) for _ in range(3)]
    assert abs(lidar(views) - k) < 0.5
    noise = torch.zeros(d)
    noise[:2], noise[2:] = 2.0, 0.05  # view noise as large as the spread in dims 0-1, small elsewhere
    noisy = [centres + noise * torch.randn(n, d, generator=g) for _ in range(3)]
    assert lidar(noisy) < 2.6 and effective_rank(noisy[0], center=True) > 3.5
    with pytest.raises(ValueError, match="V >= 2"):
        lidar(views[:1])


def test_knn_probe_auc_separates_learnable_from_random_labels():
    from workbench.metrics import knn_probe_auc

    g = torch.Generator().manual_seed(0)
    y = (torch.rand(300, 3, generator=g) < 0.5).numpy().astype(np.uint8)
    emb = torch.from_numpy(y.astype(np.float32)) * 4 + 0.5 * torch.randn(300, 3, generator=g)  # tags readable
    assert knn_probe_auc(emb[:200], y[:200], emb[200:], y[200:]) > 0.95
    rand = torch.randn(300, 3, generator=g)  # embeddings that know nothing of the tags
    assert abs(knn_probe_auc(rand[:200], y[:200], rand[200:], y[200:]) - 0.5) < 0.1


def test_the_lines_drawn_are_where_the_monitor_fires() -> None:
    """`threshold_lines` (what notebook 03 draws) and `check` read one function: a statistic just
    past its drawn line fires the monitor, just inside it does not, in the units plotted."""
    cfg = DiagnosticsConfig()
    mon = CollapseMonitor(cfg, "run")
    base = {"embed_dim": 64.0, "embed_n": 16.0, "proj_dim": 128.0, "proj_n": 64.0, "dino_ln_k": math.log(64)}
    lines = mon.threshold_lines(base)
    assert lines["proj_rank"] == pytest.approx(max(cfg.rank_fraction_min * 64, cfg.rank_min))
    assert lines["embed_std_ratio"] == pytest.approx(cfg.std_ratio_min)
    assert lines["dino_kl"] == cfg.dino_kl_min
    assert lines["dino_teacher_batch_entropy"] == pytest.approx(math.log(64) * cfg.entropy_margin)
    assert lines["dino_teacher_entropy"] == pytest.approx(math.log(64) * (1 - cfg.entropy_margin))
    for name, y in lines.items():
        stat, scale = (name[:-6], math.sqrt(base[f"{name.split('_')[0]}_dim"])) if name.endswith("_ratio") \
            else (name, 1.0)
        fires_below = name not in ("dino_teacher_entropy", "dino_ce")  # those fire near ln K, above the line
        past, inside = (y * 0.99, y * 1.01) if fires_below else (y * 1.01, y * 0.99)
        assert [w["stat"] for w in mon.check(1, {**base, stat: past / scale})] == [stat], name
        assert mon.check(2, {**base, stat: inside / scale}) == [], name


def test_tag_cooccurrence_is_a_cosine_in_float_whatever_the_label_dtype() -> None:
    """300 tracks all tagged a and b, 100 of them also c (uint8 labels, as the stores keep them):
    counts past 255 must not wrap; the diagonal is 1 and cos(a, c) = 100 / sqrt(300 * 100)."""
    from workbench.diagnostic_plots import tag_cooccurrence

    y = np.zeros((300, 4), np.uint8)
    y[:, :2] = 1
    y[:100, 2] = 1  # tag 3 never occurs
    co = tag_cooccurrence(y)
    assert co.dtype == np.float64 and np.allclose(np.diag(co)[:3], 1.0) and co[3, 3] == 0.0
    assert co[0, 1] == pytest.approx(1.0) and co[0, 2] == pytest.approx(100 / math.sqrt(300 * 100))
