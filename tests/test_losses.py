"""The losses' math: known values, independent formulas, symmetry, descent, fidelity relations, memory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from workbench.config import FIDELITIES
from workbench.losses import (
    DINOCenter,
    barlow_twins_loss,
    byol_loss,
    dino_loss,
    ema_momentum,
    nt_xent_loss,
    vicreg_loss,
)


def _pair(b=32, d=16, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(b, d, generator=g, dtype=dtype)
    z2 = z1 + 0.5 * torch.randn(b, d, generator=g, dtype=dtype)
    return z1, z2


def _scalar(out):
    return out[0] if isinstance(out, tuple) else out


def _all_losses(fidelity):
    """name -> f(z1, z2) -> scalar, for the generic tests."""
    center = torch.zeros(1, 16, dtype=torch.float64)
    fns = {
        "nt_xent": lambda a, b: nt_xent_loss(a, b, 0.1)[0],
        "byol": lambda a, b: byol_loss(a, b, fidelity=fidelity)[0],
        "dino": lambda a, b: dino_loss(a, b, center.to(a.dtype), 0.1, 0.04, fidelity=fidelity)[0],
        "vicreg": lambda a, b: vicreg_loss(a, b, fidelity=fidelity)[0],
        "barlow_twins": lambda a, b: barlow_twins_loss(a, b, fidelity=fidelity)[0],
    }
    return fns


# ----------------------------------------------------------------------------- generic properties

@pytest.mark.parametrize("fidelity", FIDELITIES)
@pytest.mark.parametrize("name", ["nt_xent", "byol", "dino", "vicreg", "barlow_twins"])
def test_finite_scalar(name, fidelity):
    z1, z2 = _pair(dtype=torch.float32)
    loss = _all_losses(fidelity)[name](z1, z2)
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert loss.dtype == torch.float32


@pytest.mark.parametrize("fidelity", FIDELITIES)
@pytest.mark.parametrize("name", ["nt_xent", "vicreg", "barlow_twins"])
def test_symmetric_under_view_swap(name, fidelity):
    z1, z2 = _pair()
    f = _all_losses(fidelity)[name]
    torch.testing.assert_close(f(z1, z2), f(z2, z1), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fidelity", FIDELITIES)
@pytest.mark.parametrize("name", ["nt_xent", "byol", "dino", "vicreg", "barlow_twins"])
def test_loss_decreases_on_free_embeddings(name, fidelity):
    """20 Adam steps on free (B, D) embeddings lower the loss (BYOL/DINO: only the student side)."""
    torch.manual_seed(0)
    z1 = nn.Parameter(torch.randn(32, 16))
    z2 = nn.Parameter(torch.randn(32, 16))
    f = _all_losses(fidelity)[name]
    opt = torch.optim.Adam([z1, z2], lr=0.05)
    start = None
    for _ in range(20):
        loss = f(z1, z2)
        start = loss.detach() if start is None else start
        opt.zero_grad()
        loss.backward()
        opt.step()
    end = f(z1, z2).detach()
    assert end < start * 0.95, (name, fidelity, float(start), float(end))
    if name in ("byol", "dino"):  # the teacher side is detached inside the loss
        assert z2.grad is None or z2.grad.abs().max() == 0


def test_bad_inputs_raise():
    z = torch.randn(8, 4)
    with pytest.raises(ValueError, match=r"\(8, 4\).*\(8, 5\)"):
        nt_xent_loss(z, torch.randn(8, 5))[0]
    with pytest.raises(ValueError, match="fidelity"):
        byol_loss(z, z, fidelity="release")[0]
    with pytest.raises(ValueError, match="center"):
        dino_loss(z, z, torch.zeros(1, 5))[0]


# ----------------------------------------------------------------------------- NT-Xent

def _nt_xent_broadcast(z1, z2, temperature):
    """Independent formula in the released code's structure: an explicit (N, N, D) cosine
    broadcast, positives from the +-B diagonals, max-shifted softmax over the non-self entries."""
    b = z1.shape[0]
    y = torch.cat([z1, z2])  # (2B, D)
    sim = F.cosine_similarity(y.unsqueeze(0), y.unsqueeze(1), dim=2) / temperature  # (2B, 2B) via (2B, 2B, D)
    pos = torch.cat([torch.diag(sim, b), torch.diag(sim, -b)]).reshape(2 * b, 1)
    neg = sim[~torch.eye(2 * b, dtype=torch.bool)].reshape(2 * b, -1)
    m = neg.max(dim=1, keepdim=True).values
    return -torch.log(torch.exp(pos - m) / torch.exp(neg - m).sum(dim=1, keepdim=True)).mean()


def _nt_xent_loop(z1, z2, temperature):
    """Independent formula: one anchor at a time."""
    y = F.normalize(torch.cat([z1, z2]), dim=1)
    n2 = y.shape[0]
    b = n2 // 2
    total = 0.0
    for i in range(n2):
        j = (i + b) % n2
        others = torch.stack([y[i] @ y[k] / temperature for k in range(n2) if k != i])
        total = total - (y[i] @ y[j] / temperature - torch.logsumexp(others, dim=0))
    return total / n2


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_nt_xent_matches_broadcast_and_loop(temperature):
    z1, z2 = _pair(b=12, d=7)
    ours = nt_xent_loss(z1, z2, temperature)[0]
    torch.testing.assert_close(ours, _nt_xent_broadcast(z1, z2, temperature), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ours, _nt_xent_loop(z1, z2, temperature), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("temperature", [0.1, 0.2, 1.0])
def test_nt_xent_closed_form_aligned_orthogonal(temperature):
    """z1_i = z2_i, rows mutually orthogonal (arbitrary norms, random rotation): every anchor has
    cos 1 with its positive and 0 with the 2B - 2 others: loss = log(1 + (2B - 2) e^{-1/t})."""
    b, d = 10, 24
    q, _ = torch.linalg.qr(torch.randn(d, d, dtype=torch.float64))
    scale = torch.rand(b, 1, dtype=torch.float64) * 5 + 0.1
    z = scale * q[:b]  # (B, D) orthogonal rows
    expected = math.log(1 + (2 * b - 2) * math.exp(-1 / temperature))
    torch.testing.assert_close(nt_xent_loss(z, z.clone(), temperature)[0].item(), expected, rtol=1e-12, atol=1e-12)


def test_nt_xent_rank_slices_equal_global_batch():
    """Two simulated ranks (local anchors + gathered candidates): the mean of the per-rank losses
    and its gradient equal the single-process loss on the global batch."""
    g1 = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    g2 = torch.randn(16, 8, dtype=torch.float64, requires_grad=True)
    full = nt_xent_loss(g1, g2)[0]
    grad_full = torch.autograd.grad(full, (g1, g2))
    b, world = 8, 2
    per_rank = [nt_xent_loss(g1[r * b:(r + 1) * b], g2[r * b:(r + 1) * b], global_views=(g1, g2), rank_offset=r * b)[0]
                for r in range(world)]
    mean = sum(per_rank) / world
    grad_split = torch.autograd.grad(mean, (g1, g2))
    torch.testing.assert_close(mean, full, rtol=1e-12, atol=1e-12)
    for a, c in zip(grad_split, grad_full):
        torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="rank_offset"):
        nt_xent_loss(g1[:8], g2[:8], global_views=(g1, g2), rank_offset=12)[0]


class _LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op produces (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_nt_xent_memory_is_n_squared_not_n_squared_d():
    """2B = 2048 rows of D = 2048: a broadcast implementation makes a (2048, 2048, 2048) tensor
    (8.6e9 elements, 32 GiB); ours must never exceed max((2B)^2, 2B D) elements, forward and backward."""
    b, d = 1024, 2048
    z1 = torch.randn(b, d, requires_grad=True)
    z2 = torch.randn(b, d, requires_grad=True)
    with _LargestTensor() as mode:
        loss = nt_xent_loss(z1, z2)[0]
        loss.backward()
    assert torch.isfinite(loss)
    assert mode.largest <= max((2 * b) ** 2, 2 * b * d), mode.largest
    # the detector does catch a broadcast (small sizes so it is cheap)
    with _LargestTensor() as mode:
        _nt_xent_broadcast(z1[:64].detach(), z2[:64].detach(), 0.1)
    assert mode.largest >= 128 * 128 * d


# ----------------------------------------------------------------------------- BYOL

def test_byol_identical_is_zero_and_matches_loop():
    p = torch.randn(16, 8, dtype=torch.float64)
    assert byol_loss(p, 3 * p)[0].abs() < 1e-12
    z = torch.randn(16, 8, dtype=torch.float64)
    loop = sum(((p[i] / p[i].norm() - z[i] / z[i].norm()) ** 2).sum() for i in range(16)) / 16
    torch.testing.assert_close(byol_loss(p, z)[0], loop, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("b,d", [(16, 8), (8, 32), (256, 2048)])
def test_byol_paper_code_is_b_over_d_rescaling(b, d):
    """docs/paper.md 1: loss_pc - 2 = (B / D)(loss_ref - 2), so gradients scale by B / D."""
    p = torch.randn(b, d, dtype=torch.float64, requires_grad=True)
    z = torch.randn(b, d, dtype=torch.float64)
    ref = byol_loss(p, z)[0]
    pc = byol_loss(p, z, fidelity="paper-code")[0]
    torch.testing.assert_close(pc - 2, (b / d) * (ref - 2), rtol=1e-10, atol=1e-12)
    (g_ref,) = torch.autograd.grad(ref, p)
    (g_pc,) = torch.autograd.grad(pc, p)
    torch.testing.assert_close(g_pc, (b / d) * g_ref, rtol=1e-10, atol=1e-14)
    # identical p, z: 0 in the paper, 2 - 2 B / D in the release
    torch.testing.assert_close(byol_loss(z, z, fidelity="paper-code")[0].item(), 2 - 2 * b / d, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- DINO

def _dino_explicit(s, t, c, ts, tt):
    loss = 0.0
    for i in range(s.shape[0]):
        q = torch.exp((t[i] - c[0]) / tt)
        q = q / q.sum()
        log_p = s[i] / ts - torch.log(torch.exp(s[i] / ts).sum())
        loss = loss - (q * log_p).sum()
    return loss / s.shape[0]


@pytest.mark.parametrize("fidelity", FIDELITIES)
def test_dino_matches_explicit_formula(fidelity):
    g = torch.Generator().manual_seed(1)
    s, t = torch.randn(6, 10, generator=g, dtype=torch.float64), torch.randn(6, 10, generator=g, dtype=torch.float64)
    c = torch.randn(1, 10, generator=g, dtype=torch.float64)
    torch.testing.assert_close(dino_loss(s, t, c, 0.1, 0.04, fidelity=fidelity)[0], _dino_explicit(s, t, c, 0.1, 0.04),
                               rtol=1e-10, atol=1e-10)


def test_dino_uniform_teacher_gives_ln_k():
    k = 64
    t = torch.full((8, k), 3.0)  # constant logits: uniform teacher
    c = torch.zeros(1, k)
    assert abs(dino_loss(torch.zeros(8, k), t, c)[0].item() - math.log(k)) < 1e-5
    # any student against a uniform teacher u: ln K + KL(u || p) >= ln K
    s = torch.randn(8, k)
    log_p = F.log_softmax(s / 0.1, dim=-1)
    kl = ((1 / k) * (math.log(1 / k) - log_p)).sum(dim=-1).mean()
    torch.testing.assert_close(dino_loss(s, t, c)[0], math.log(k) + kl)
    assert kl > 0


def test_dino_paper_code_equal_without_underflow():
    g = torch.Generator().manual_seed(2)
    s = torch.randn(16, 32, generator=g, requires_grad=True)
    t, c = torch.randn(16, 32, generator=g), torch.randn(1, 32, generator=g) * 0.1
    ref = dino_loss(s, t, c, 0.1, 0.04)[0]
    pc = dino_loss(s, t, c, 0.1, 0.04, fidelity="paper-code")[0]
    torch.testing.assert_close(pc, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.autograd.grad(pc, s)[0], torch.autograd.grad(ref, s)[0], rtol=1e-4, atol=1e-7)


def test_dino_paper_code_underflow_has_no_gradient():
    """docs/paper.md 4: a prototype the teacher wants (teacher mass 1) whose student probability is
    about e^-101 (> 0 in float32) is clamped at log = -100 and gets no gradient in paper-code;
    the reference pulls it up with gradient -(1 - p)/student_temp. An exact 0 gives NaN (0 / 0)."""
    k, ts = 8, 0.1
    s = torch.zeros(1, k)
    s[0, 0] = -101 * ts  # log p_0 ~ -101 - log(7)...: in (0, e^-100)
    s = s.requires_grad_()
    t = torch.full((1, k), -1e3)
    t[0, 0] = 0.0  # teacher puts all its mass on prototype 0
    c = torch.zeros(1, k)
    p0 = F.softmax(s.detach() / ts, dim=-1)[0, 0]
    assert 0 < p0 < math.exp(-100)
    (g_ref,) = torch.autograd.grad(dino_loss(s, t, c, ts, 0.04)[0], s)
    (g_pc,) = torch.autograd.grad(dino_loss(s, t, c, ts, 0.04, fidelity="paper-code")[0], s)
    assert g_ref[0, 0] < -9.0  # -(1 - p0) / 0.1
    assert g_pc.abs().max() < 1e-30
    assert dino_loss(s, t, c, ts, 0.04, fidelity="paper-code")[0].item() == pytest.approx(100.0, abs=1e-4)
    # exact underflow: softmax gives 0, log gives -inf, clamp's zero gradient times 1/0 is NaN
    s2 = torch.zeros(1, k)
    s2[0, 0] = -200 * ts
    s2.requires_grad_()
    (g_nan,) = torch.autograd.grad(dino_loss(s2, t, c, ts, 0.04, fidelity="paper-code")[0], s2)
    assert torch.isnan(g_nan).all()
    (g_ok,) = torch.autograd.grad(dino_loss(s2, t, c, ts, 0.04)[0], s2)
    assert torch.isfinite(g_ok).all()


def test_dino_center_ema():
    center = DINOCenter(4, momentum=0.9)
    x = torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]])
    center.update(x)
    torch.testing.assert_close(center.center, 0.1 * x.mean(dim=0, keepdim=True))
    center.update(x, momentum=0.5)
    torch.testing.assert_close(center.center, 0.5 * 0.1 * x.mean(0, keepdim=True) + 0.5 * x.mean(0, keepdim=True))
    assert "center" in center.state_dict()
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        center.update(torch.zeros(2, 3))


# ----------------------------------------------------------------------------- VICReg

def _vicreg_reference_code(x, y, sim=25.0, std=25.0, cov=1.0):
    """Bardes et al.'s main_vicreg.py formula, written out with masks."""
    b, d = x.shape
    repr_loss = ((x - y) ** 2).mean()
    x, y = x - x.mean(0), y - y.mean(0)
    std_x, std_y = torch.sqrt(x.var(0) + 1e-4), torch.sqrt(y.var(0) + 1e-4)
    std_loss = torch.relu(1 - std_x).mean() / 2 + torch.relu(1 - std_y).mean() / 2
    off = ~torch.eye(d, dtype=torch.bool)
    cx, cy = torch.einsum("bi,bj->ij", x, x) / (b - 1), torch.einsum("bi,bj->ij", y, y) / (b - 1)
    cov_loss = cx[off].pow(2).sum() / d + cy[off].pow(2).sum() / d
    return sim * repr_loss + std * std_loss + cov * cov_loss


def _vicreg_release(a, b_, inv=1.0, var=1.0, cov=1.0):
    """The release's FeatureStatsLoss for one pair, with its BatchNorm1d module."""
    bn = nn.BatchNorm1d(a.shape[1], affine=False).to(a.dtype)
    mask = torch.eye(a.shape[1], dtype=torch.bool)
    n = a.shape[0]

    def stats(x):
        return torch.sqrt(torch.var(x, dim=0) + 1e-5), (bn(x).T @ bn(x)) / (n - 1)

    va, ca = stats(a)
    vb, cb = stats(b_)
    inv_l = torch.square(a - b_).mean() * inv
    var_l = torch.cat([F.relu(1 - va), F.relu(1 - vb)]).mean() * var
    cov_l = torch.cat([ca[~mask].pow(2), cb[~mask].pow(2)]).mean() * cov
    return inv_l + var_l + cov_l


def test_vicreg_matches_reference_and_release_formulas():
    z1, z2 = _pair(b=24, d=10)
    z1, z2 = 0.6 * z1, 0.6 * z2  # some stds below 1 so the hinge is active
    loss, terms = vicreg_loss(z1, z2)
    torch.testing.assert_close(loss, _vicreg_reference_code(z1, z2), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(sum(terms.values()), loss.detach(), rtol=1e-12, atol=1e-12)
    assert all(not v.requires_grad for v in terms.values())
    pc, _ = vicreg_loss(z1, z2, fidelity="paper-code")
    torch.testing.assert_close(pc, _vicreg_release(z1, z2), rtol=1e-10, atol=1e-10)
    pc25, _ = vicreg_loss(z1, z2, 25.0, 25.0, 1.0, fidelity="paper-code")  # explicit coefficients win
    torch.testing.assert_close(pc25, _vicreg_release(z1, z2, 25.0, 25.0, 1.0), rtol=1e-10, atol=1e-10)


def test_vicreg_whitened_identical_views_is_zero():
    """Identical views with identity (unbiased) covariance: no invariance, variance or covariance loss."""
    x = torch.randn(64, 8, dtype=torch.float64)
    x = x - x.mean(0)
    evals, evecs = torch.linalg.eigh(x.T @ x / 63)
    z = x @ evecs @ torch.diag(evals.rsqrt()) @ evecs.T  # covariance exactly I
    loss, terms = vicreg_loss(z, z.clone())
    assert loss.abs() < 1e-10, terms


def test_vicreg_paper_code_covariance_relation():
    """docs/paper.md 2 on inputs with zero mean and unit biased variance (so BN(z) = z / sqrt(1 + 1e-5)):
    cov_ref / cov_pc = 2 (D - 1)(1 + 1e-5)^2 with the same coefficient; with the default
    coefficients the covariance-to-invariance weight is 2 (D - 1)(1 + 1e-5)^2 / 25 times weaker."""
    b, d = 128, 32
    z1, z2 = _pair(b=b, d=d, seed=3)
    z1 = (z1 - z1.mean(0)) / z1.std(0, unbiased=False)
    z2 = (z2 - z2.mean(0)) / z2.std(0, unbiased=False)
    _, ref = vicreg_loss(z1, z2, 1.0, 1.0, 1.0)
    _, pc = vicreg_loss(z1, z2, 1.0, 1.0, 1.0, fidelity="paper-code")
    torch.testing.assert_close(pc["invariance"], ref["invariance"])
    torch.testing.assert_close(ref["covariance"] / pc["covariance"],
                               torch.tensor(2 * (d - 1) * (1 + 1e-5) ** 2, dtype=torch.float64), rtol=1e-9, atol=0)
    _, ref_d = vicreg_loss(z1, z2)  # 25 / 25 / 1
    _, pc_d = vicreg_loss(z1, z2, fidelity="paper-code")  # 1 / 1 / 1
    ratio = (ref_d["covariance"] / ref_d["invariance"]) / (pc_d["covariance"] / pc_d["invariance"])
    torch.testing.assert_close(ratio, torch.tensor(2 * (d - 1) * (1 + 1e-5) ** 2 / 25, dtype=torch.float64),
                               rtol=1e-9, atol=0)


# ----------------------------------------------------------------------------- Barlow Twins

def _barlow_reference_code(z1, z2, lambd):
    """facebookresearch/barlowtwins main.py with its BatchNorm1d(affine=False) and a mask."""
    bn = nn.BatchNorm1d(z1.shape[1], affine=False).to(z1.dtype)
    c = bn(z1).T @ bn(z2) / z1.shape[0]
    mask = torch.eye(z1.shape[1], dtype=torch.bool)
    return (torch.diagonal(c) - 1).pow(2).sum() + lambd * c[~mask].pow(2).sum()


def _barlow_release(z1, z2, off_coef=1.0):
    """The release's DiagonalLoss for one pair."""
    bn = nn.BatchNorm1d(z1.shape[1], affine=False).to(z1.dtype)
    cc = bn(z1).T @ bn(z2) / (z1.shape[0] - 1)
    mask = torch.eye(z1.shape[1], dtype=torch.bool)
    return (1 - cc[mask]).pow(2).mean() + off_coef * cc[~mask].pow(2).mean()


def test_barlow_matches_reference_and_release_formulas():
    z1, z2 = _pair(b=20, d=12)
    loss, terms = barlow_twins_loss(z1, z2)
    torch.testing.assert_close(loss, _barlow_reference_code(z1, z2, 5e-3), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(terms["invariance"] + terms["redundancy"], loss.detach(), rtol=1e-12, atol=1e-12)
    pc, _ = barlow_twins_loss(z1, z2, fidelity="paper-code")
    torch.testing.assert_close(pc, _barlow_release(z1, z2), rtol=1e-10, atol=1e-12)


def test_barlow_identical_standardised_views_zero_invariance():
    z = torch.randn(64, 16, dtype=torch.float64)
    z = (z - z.mean(0)) / z.std(0, unbiased=False)
    _, terms = barlow_twins_loss(z, z.clone())
    assert terms["invariance"] < 1e-8  # (1 - 1/(1 + 1e-5))^2 * 16 ~ 1.6e-9 from BatchNorm's eps
    assert terms["redundancy"] > 0


def test_barlow_paper_code_effective_lambda():
    """docs/paper.md 3: with k = B/(B-1) and c the reference cross-correlation,
    D * loss_pc = sum_i (1 - k c_ii)^2 + 1/(D-1) sum_{i!=j} (k c_ij)^2: effective lambda 1/(D-1),
    the whole loss scaled by 1/D. The off-diagonal parts relate exactly:
    redundancy_ref / 5e-3 = redundancy_pc * D (D - 1) / k^2."""
    b, d = 40, 12
    z1, z2 = _pair(b=b, d=d, seed=4)
    k = b / (b - 1)
    bn = nn.BatchNorm1d(d, affine=False).to(torch.float64)
    c = bn(z1).T @ bn(z2) / b
    off = ~torch.eye(d, dtype=torch.bool)
    pc, pc_terms = barlow_twins_loss(z1, z2, fidelity="paper-code")
    expected = ((1 - k * torch.diagonal(c)).pow(2).sum() + (k * c[off]).pow(2).sum() / (d - 1)) / d
    torch.testing.assert_close(pc, expected, rtol=1e-10, atol=1e-14)
    _, ref_terms = barlow_twins_loss(z1, z2)
    torch.testing.assert_close(ref_terms["redundancy"] / 5e-3, pc_terms["redundancy"] * d * (d - 1) / k ** 2,
                               rtol=1e-10, atol=1e-14)
    # at large B (k -> 1) the paper-code loss is the reference with lambda = 1/(D-1), divided by D
    big_b = 4096
    z1b, z2b = _pair(b=big_b, d=d, seed=5)
    ref_eff, _ = barlow_twins_loss(z1b, z2b, lambd=1 / (d - 1))
    pc_b, _ = barlow_twins_loss(z1b, z2b, fidelity="paper-code")
    # k = 1.00024 still moves the diagonal target to (B-1)/B: 0.4 % of this loss, where 1 - c_ii ~ 0.1
    torch.testing.assert_close(pc_b, ref_eff / d, rtol=1e-2, atol=0)


# ----------------------------------------------------------------------------- EMA momentum

def test_ema_momentum_schedules():
    assert ema_momentum(0, 1000, 0.996) == pytest.approx(0.996)
    assert ema_momentum(1000, 1000, 0.996) == pytest.approx(1.0)
    assert ema_momentum(500, 1000, 0.996) == pytest.approx(0.998)
    values = [ema_momentum(s, 1000, 0.996) for s in range(0, 1001, 50)]
    assert values == sorted(values)
    # paper-code: cosine over 999 epochs; a 100-epoch run ends at about 0.99610
    end = ema_momentum(100 * 50, 100 * 50, 0.996, fidelity="paper-code", steps_per_epoch=50)
    expected = 1 - 0.004 * (math.cos(math.pi * 100 / 999) + 1) / 2
    assert end == pytest.approx(expected) and end < 0.9962
    assert ema_momentum(999 * 50, 10, 0.996, fidelity="paper-code", steps_per_epoch=50) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        ema_momentum(0, 10, fidelity="paper-code")


def test_losses_compute_in_float32_under_bf16_autocast():
    """Inside a bf16 autocast region the losses still compute in float32 (on the bf16 inputs)."""
    z1, z2 = (z.to(torch.bfloat16) for z in _pair(b=16, d=8, dtype=torch.float32))
    center = torch.zeros(1, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outs = {"nt_xent": nt_xent_loss(z1, z2)[0], "dino": dino_loss(z1, z2, center)[0],
                "vicreg": vicreg_loss(z1, z2)[0], "barlow_twins": barlow_twins_loss(z1, z2)[0],
                "byol": byol_loss(z1, z2)[0]}
    f1, f2 = z1.float(), z2.float()
    exact = {"nt_xent": nt_xent_loss(f1, f2)[0], "dino": dino_loss(f1, f2, center)[0], "vicreg": vicreg_loss(f1, f2)[0],
             "barlow_twins": barlow_twins_loss(f1, f2)[0], "byol": byol_loss(f1, f2)[0]}
    for name, value in outs.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, exact[name], rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------------- collapse remedies
def test_sinkhorn_knopp_balances_prototypes_and_rows():
    """Rows (samples) sum to exactly 1; every prototype's column tends to N/K as iterations grow,
    even when the teacher puts nearly all mass on one prototype (what centering fails against)."""
    from workbench.losses import sinkhorn_knopp

    g = torch.Generator().manual_seed(0)
    n, k = 64, 8
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    logits[:, 0] += 3.0  # a dominant prototype
    errors = []
    for iters in (1, 3, 10, 50):
        q = sinkhorn_knopp(logits, teacher_temp=0.1, n_iterations=iters)
        torch.testing.assert_close(q.sum(dim=1), torch.ones(n, dtype=torch.float64), rtol=1e-10, atol=1e-10)
        errors.append(float((q.sum(dim=0) - n / k).abs().max()))
    assert errors[-1] < 0.01 * n / k and errors == sorted(errors, reverse=True)  # converges monotonically here
    plain = torch.softmax(logits / 0.1, dim=1).sum(dim=0)
    assert float(plain[0]) > 0.9 * n  # the plain sharpened teacher sends almost everything to prototype 0
    q = sinkhorn_knopp(logits + 1000.0, teacher_temp=0.04)  # no overflow: a shift of the logits cancels
    torch.testing.assert_close(q, sinkhorn_knopp(logits, teacher_temp=0.04))


def test_koleo_known_value_and_gradient_spreads():
    from workbench.losses import koleo_loss

    square = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=torch.float64) * 3.0
    loss, _ = koleo_loss(square)
    assert float(loss) == pytest.approx(-math.log(math.sqrt(2.0)), abs=1e-6)
    z = torch.tensor([[1.0, 0.0], [1.0, 0.05], [-1.0, 0.0]], requires_grad=True)
    koleo_loss(z)[0].backward()
    assert z.grad[0, 1] > 0 > z.grad[1, 1]  # descent pushes the two near points apart
    with pytest.raises(ValueError, match="B >= 2"):
        koleo_loss(torch.zeros(1, 3))
