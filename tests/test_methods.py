"""The five methods: two CPU training steps each on the smoke corpus, the registry, schedules."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from workbench.methods import METHODS, build_method


def _cfg(smoke_cfg, name, **method):
    return replace(smoke_cfg, method=replace(smoke_cfg.method, name=name, **method))


@pytest.fixture(scope="module")
def smoke_views(smoke_cfg, smoke_store):
    """Two batches of mel views (V x (B, 1, F, T)) cut from the smoke corpus."""
    from workbench.audio import MelFrontend
    from workbench.data.datasets import pretrain_indices
    from workbench.data.views import ViewSampler

    sampler = ViewSampler.from_config(smoke_store, pretrain_indices(smoke_store), smoke_cfg)
    frontend = MelFrontend.from_config(smoke_cfg.audio)
    batches = []
    for _ in range(2):
        waves = sampler.sample(smoke_cfg.train.batch_size).views
        mel = frontend(torch.cat(waves))
        batches.append(list(mel.split(waves[0].shape[0])))
    return batches


@pytest.mark.parametrize("name", list(METHODS))
def test_two_training_steps(name, smoke_cfg, smoke_views):
    cfg = _cfg(smoke_cfg, name)
    method = build_method(cfg)
    assert isinstance(method.encoder, torch.nn.Module)
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3)
    teacher_before = {k: v.clone() for k, v in method.state_dict().items() if k.startswith("teacher.")}
    for step, views in enumerate(smoke_views, start=1):
        loss, logs = method.training_step(views, step)
        assert loss.dim() == 0 and torch.isfinite(loss), (name, loss)
        assert all(not v.requires_grad for v in logs.values())
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in method.encoder.parameters() if p.grad is not None]
        assert grads and any(g.abs().sum() > 0 for g in grads), f"{name}: no gradient reaches the encoder"
        opt.step()
        method.after_step(step)
    if teacher_before:  # BYOL, DINO: the EMA teacher moved, and only a little
        moved = [not torch.equal(method.state_dict()[k], v) for k, v in teacher_before.items() if v.is_floating_point()]
        assert any(moved)
    B = smoke_views[0][0].shape[0]
    mel = smoke_views[0][0]
    assert method.embed(mel).shape == (B, cfg.encoder.output_dim)
    assert method.project(mel).shape[0] == B
    assert all(math.isfinite(v) for v in method.schedule_state().values())


def test_three_views_average_over_pairs(smoke_cfg, smoke_views):
    """V = 3: the loss is the mean over view pairs of the two-view loss (one backbone pass)."""
    from workbench.losses import barlow_twins_loss

    method = build_method(_cfg(smoke_cfg, "barlow_twins")).eval()  # eval: BatchNorm per row, no batch mixing
    v = smoke_views[0]
    views = [v[0], v[1], v[0].flip(-1)]
    loss, _ = method.training_step(views, 1)
    zs = [method.project(x) for x in views]
    expected = sum(barlow_twins_loss(zs[i], zs[j])[0] for i, j in ((0, 1), (0, 2), (1, 2))) / 3
    torch.testing.assert_close(loss, expected, rtol=1e-4, atol=1e-5)


def test_unknown_method_lists_valid_names(smoke_cfg):
    with pytest.raises(ValueError) as err:
        build_method(_cfg(smoke_cfg, "swav"))
    for name in METHODS:
        assert name in str(err.value)


def test_views_are_checked(smoke_cfg, smoke_views):
    method = build_method(_cfg(smoke_cfg, "simclr"))
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        method.training_step([smoke_views[0][0][:, 0], smoke_views[0][1][:, 0]], 1)


@pytest.mark.parametrize("name", ["byol", "dino"])
def test_ema_momentum_reaches_one_only_in_reference_mode(name, smoke_cfg):
    steps = smoke_cfg.train.steps
    ref = build_method(_cfg(smoke_cfg, name, fidelity="reference"))
    code = build_method(_cfg(smoke_cfg, name, fidelity="paper-code"))
    assert ref.momentum(1) >= smoke_cfg.method.ema_momentum
    assert ref.momentum(steps) == pytest.approx(1.0)
    assert code.momentum(steps) < 0.9961  # 999-epoch cosine, not capped at the run (docs/paper.md 5)
    m = [ref.momentum(s) for s in range(1, steps + 1)]
    assert m == sorted(m)


def test_dino_teacher_temperature_warmup(smoke_cfg):
    cfg = replace(_cfg(smoke_cfg, "dino", warmup_teacher_temp_fraction=0.5),
                  train=replace(smoke_cfg.train, steps_per_epoch=10, steps=40))  # warm-up: the first 20 steps
    code = build_method(replace(cfg, method=replace(cfg.method, fidelity="paper-code")))
    assert code.teacher_temp(0) == pytest.approx(0.02)  # the study's 0.02 -> 0.04
    assert code.teacher_temp(10) == pytest.approx(0.03)
    assert code.teacher_temp(20) == code.teacher_temp(40) == pytest.approx(0.04)
    ref = build_method(cfg)  # DINO's paper: 0.04 -> 0.07
    assert ref.teacher_temp(0) == pytest.approx(0.04) and ref.teacher_temp(20) == pytest.approx(0.07)
    assert ref.schedule_state()["student_temp"] == pytest.approx(0.1)


def test_dino_stabilisers_are_shares_of_the_run(smoke_cfg, smoke_views):
    """DINO's frozen last layer (reference: the first 1 % of the run, main_dino.py's 1 epoch of 100)
    and its teacher-temperature warm-up (the first 10 %, both papers) scale with the run, whatever
    its epoch length: a 200-step demo run freezes 2 steps and warms up over 20."""
    cfg = _cfg(smoke_cfg, "dino")
    demo = replace(cfg, train=replace(cfg.train, steps=200, steps_per_epoch=40))
    assert build_method(demo).freeze_last_layer_steps == 2 and build_method(demo).warmup_teacher_steps == 20
    code = build_method(replace(demo, method=replace(demo.method, fidelity="paper-code")))
    assert code.freeze_last_layer_steps == 0 and code.warmup_teacher_steps == 20
    cfg = replace(cfg, method=replace(cfg.method, freeze_last_layer_fraction=0.5))  # 2 of the smoke's 4 steps
    dino = build_method(cfg)
    assert dino.freeze_last_layer_steps == 2
    last = [p for p in dino.head.last_layer.parameters() if p.requires_grad]
    assert last
    for step, frozen in ((1, True), (2, True), (3, False)):
        dino.zero_grad()
        dino.training_step(smoke_views[0], step)[0].backward()
        dino.before_optimizer_step(step)
        assert all((p.grad is None) == frozen for p in last), step
        assert dino.encoder.conv1.weight.grad is not None  # the rest of the network learns


def test_byol_sums_its_two_directions_in_reference(smoke_cfg, smoke_views):
    cfg = _cfg(smoke_cfg, "byol")
    ref = build_method(cfg)
    code = build_method(replace(cfg, method=replace(cfg.method, fidelity="paper-code")))
    code.load_state_dict(ref.state_dict())
    views = smoke_views[0]
    assert ref.per_view_bn  # BYOL's reference code: one pass per view
    ps = [ref.predictor(ref.projector(ref.encoder(v))) for v in views]
    zs = [ref.teacher(v) for v in views]
    from workbench.losses import byol_loss
    both = byol_loss(ps[0], zs[1])[0] + byol_loss(ps[1], zs[0])[0]  # Grill et al. 2020, Eq. 2: L + L~
    torch.testing.assert_close(ref.training_step(views, 1)[0], both, rtol=1e-5, atol=1e-6)


def test_constant_ema_schedule_keeps_the_momentum(smoke_cfg):
    byol = build_method(_cfg(smoke_cfg, "byol", ema_momentum=0.0, ema_schedule="constant"))
    assert byol.momentum(1) == byol.momentum(smoke_cfg.train.steps) == 0.0
    cosine = build_method(_cfg(smoke_cfg, "byol", ema_momentum=0.0))
    assert cosine.momentum(smoke_cfg.train.steps) == pytest.approx(1.0)  # the old "momentum 0" froze by the end


def test_dino_center_and_local_crops(smoke_cfg, smoke_views):
    dino = build_method(_cfg(smoke_cfg, "dino", n_local_crops=2))
    views = smoke_views[0]
    crops = dino.local_crops(views, step=1)
    assert len(crops) == 2 and crops[0].shape == views[0].shape
    torch.testing.assert_close(dino.local_crops(views, step=1)[1], crops[1])  # seeded by the step
    loss, _ = dino.training_step(views, 1)
    assert torch.isfinite(loss)
    assert dino.center.center.abs().sum() == 0  # a step that is skipped must not move it ...
    dino.after_step(1)
    assert dino.center.center.abs().sum() > 0  # ... a step taken updates it from the teacher logits
    s, t = dino.logits(views[0])
    assert s.shape == t.shape == (views[0].shape[0], smoke_cfg.method.n_prototypes)

    off = build_method(_cfg(smoke_cfg, "dino", use_centering=False))
    off.training_step(views, 1)
    off.after_step(1)
    assert off.center.center.abs().sum() == 0


def test_byol_without_predictor(smoke_cfg, smoke_views):
    byol = build_method(_cfg(smoke_cfg, "byol", use_predictor=False))
    assert not any("predictor" in n for n, _ in byol.named_parameters())
    loss, _ = byol.training_step(smoke_views[0], 1)
    assert torch.isfinite(loss)


def test_byol_predictor_width_follows_the_fidelity(smoke_cfg):
    """Reference: the BYOL paper's rule, a predictor as wide inside as the projector (4096 and 4096
    there); paper-code: the release's 256-unit bottleneck; an explicit width wins over both."""
    def widths(**changes):
        pred = build_method(_cfg(smoke_cfg, "byol", **changes)).predictor
        return [m.out_features for m in pred.modules() if isinstance(m, torch.nn.Linear)]

    out = smoke_cfg.method.projector_dims[-1]
    assert widths(predictor_hidden=None) == [smoke_cfg.method.projector_dims[0], out]
    wide = replace(smoke_cfg, method=replace(smoke_cfg.method, projector_dims=(96, 32)))
    assert [m.out_features for m in build_method(_cfg(wide, "byol", predictor_hidden=None)).predictor.modules()
            if isinstance(m, torch.nn.Linear)] == [96, 32]
    assert widths(predictor_hidden=None, fidelity="paper-code") == [256, out]
    assert widths(predictor_hidden=48, fidelity="paper-code") == [48, out]


def test_per_view_batchnorm_equals_separate_passes(smoke_cfg, smoke_views):
    """Ghost batches: one pass with per-view statistics gives what one pass per view gives,
    outputs and running statistics alike (BYOL's apply_once_fn per view)."""
    import copy

    from workbench.multiview import one_pass as _one_pass

    net = build_method(_cfg(smoke_cfg, "vicreg")).train()
    a, b = net, copy.deepcopy(net)
    views = smoke_views[0]
    joint = _one_pass(torch.nn.Sequential(a.encoder, a.projector), views, per_view=True)
    separate = [torch.nn.Sequential(b.encoder, b.projector)(v) for v in views]
    for x, y in zip(joint, separate):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
    for (name, x), (_, y) in zip(a.named_buffers(), b.named_buffers()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
    mixed = _one_pass(torch.nn.Sequential(b.encoder, b.projector), views)  # joint statistics differ
    assert not torch.allclose(mixed[0], separate[0], atol=1e-3)
    assert not any("forward" in vars(m) for m in a.modules())  # the patch is undone


def test_batchnorm_rule_follows_the_fidelity(smoke_cfg):
    rule = {(m, f): build_method(_cfg(smoke_cfg, m, fidelity=f)).per_view_bn
            for m in ("simclr", "byol", "dino", "vicreg", "barlow_twins") for f in ("reference", "paper-code")}
    assert [m for (m, f), v in rule.items() if f == "reference" and v] == ["byol", "vicreg", "barlow_twins"]
    assert all(v for (m, f), v in rule.items() if f == "paper-code")
    assert not build_method(_cfg(smoke_cfg, "byol", batchnorm="joint")).per_view_bn
    with pytest.raises(ValueError, match="method.batchnorm is 'ghost'"):
        build_method(_cfg(smoke_cfg, "byol", batchnorm="ghost"))


def test_dino_remedies_switch_on(smoke_cfg, smoke_views):
    """Sinkhorn-Knopp replaces the EMA center (which then stays untouched); KoLeo adds its term."""
    plain = build_method(_cfg(smoke_cfg, "dino"))
    sk = build_method(_cfg(smoke_cfg, "dino", sinkhorn_iterations=3, koleo_weight=0.1))
    sk.load_state_dict(plain.state_dict())
    views = smoke_views[0]
    loss_plain, _ = plain.training_step(views, 1)
    loss_sk, logs = sk.training_step(views, 1)
    assert torch.isfinite(loss_sk) and "koleo" in logs and not torch.isclose(loss_sk, loss_plain)
    sk.after_step(1)
    assert sk.center.center.abs().sum() == 0
    loss_sk.backward()
    assert sk.encoder.conv1.weight.grad is not None
