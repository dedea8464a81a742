"""Encoder, heads and the loader of the paper's released checkpoints."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

from workbench.config import AudioConfig, EncoderConfig, load_profile
from workbench.encoder import ModifiedResNet, build_encoder, count_parameters, grid_shape, load_released
from workbench.heads import DINOHead, Predictor, ProjectionMLP


def _randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, so eval-mode outputs test them."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.1)


@pytest.fixture(scope="module")
def paper_encoder() -> ModifiedResNet:
    torch.manual_seed(0)
    enc = ModifiedResNet()
    _randomise_bn(enc)
    return enc.eval()


def test_paper_size_shape_and_parameters(paper_encoder):
    n = count_parameters(paper_encoder)
    print(f"ModifiedResNet(width=16, layers=(3, 4, 6, 3)): {n:,} parameters")
    assert 2.7e6 < n < 2.9e6  # paper: about 2.8 M
    assert paper_encoder.attnpool.positional_embedding.shape == (13, 512)  # 4 * 3 + 1 for 128 x 126
    with torch.no_grad():
        y = paper_encoder(torch.randn(3, 1, 128, 126))
    assert y.shape == (3, 1024) and torch.isfinite(y).all()


def test_state_dict_keys_follow_release_layout(paper_encoder):
    keys = set(paper_encoder.state_dict())
    for k in ("conv1.weight", "bn3.running_var", "layer1.0.downsample.0.weight", "layer1.0.downsample.1.weight",
              "layer2.0.conv2.weight", "layer4.2.bn3.num_batches_tracked", "attnpool.positional_embedding",
              "attnpool.q_proj.bias", "attnpool.c_proj.weight"):
        assert k in keys, k
    assert "-1" in dict(paper_encoder.layer2[0].downsample.named_children())
    assert paper_encoder.conv1.weight.shape == (8, 1, 3, 3)
    assert paper_encoder.layer4[0].conv3.weight.shape == (512, 128, 1, 1)


@pytest.mark.parametrize("n,expected", [(128, 4), (126, 3), (63, 2), (32, 1), (31, 1), (30, 0)])
def test_grid_shape_is_the_real_arithmetic(n, expected):
    assert grid_shape(n, n) == (expected, expected)
    if expected:
        enc = ModifiedResNet(layers=(1, 1, 1, 1), width=4, output_dim=8, heads=1, input_shape=(n, n)).eval()
        with torch.no_grad():
            feats = enc.forward_features(torch.randn(1, 1, n, n))
        assert feats.shape[-2:] == (expected, expected)
    else:
        with pytest.raises(ValueError, match="too small"):
            ModifiedResNet(input_shape=(n, n))


def test_build_encoder_from_config():
    cfg = load_profile("smoke")
    enc = build_encoder(cfg.encoder, cfg.audio)
    assert enc.input_shape == (cfg.audio.n_mels, cfg.audio.n_frames) == (128, 126)
    with torch.no_grad():
        assert enc.eval()(torch.randn(2, 1, 128, 126)).shape == (2, cfg.encoder.output_dim)
    enc = build_encoder(EncoderConfig(width=8, layers=(2, 2, 2, 2)), AudioConfig(n_mels=96))
    assert enc.attnpool.positional_embedding.shape == (3 * 3 + 1, 256)


def test_attention_pool_equals_clip_formula():
    """Our single-query SDPA equals CLIP's / the release's full multi_head_attention_forward, token 0."""
    torch.manual_seed(1)
    enc = ModifiedResNet(layers=(1, 1, 1, 1), width=8, output_dim=48, heads=4).eval()
    pool = enc.attnpool
    x = torch.randn(2, 256, 4, 3)
    t = x.reshape(2, 256, 12).permute(2, 0, 1)  # (HW, B, C)
    t = torch.cat([t.mean(dim=0, keepdim=True), t], dim=0) + pool.positional_embedding[:, None, :]
    ref, _ = F.multi_head_attention_forward(
        query=t, key=t, value=t, embed_dim_to_check=256, num_heads=4, q_proj_weight=pool.q_proj.weight,
        k_proj_weight=pool.k_proj.weight, v_proj_weight=pool.v_proj.weight, in_proj_weight=None,
        in_proj_bias=torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]), bias_k=None, bias_v=None,
        add_zero_attn=False, dropout_p=0.0, out_proj_weight=pool.c_proj.weight, out_proj_bias=pool.c_proj.bias,
        use_separate_proj_weight=True, training=False, need_weights=False)
    with torch.no_grad():
        torch.testing.assert_close(pool(x), ref[0], rtol=1e-5, atol=1e-5)


def test_other_input_sizes_interpolate_positions():
    enc = ModifiedResNet(layers=(1, 1, 1, 1), width=4, output_dim=16, heads=2).eval()
    pos = enc.attnpool.positional_embedding
    torch.testing.assert_close(enc.attnpool._positions(4, 3), pos)
    # interpolating to the same grid is the identity (bilinear, align_corners=False, scale 1)
    grid = pos[1:].T.reshape(1, -1, 4, 3)
    torch.testing.assert_close(F.interpolate(grid, size=(4, 3), mode="bilinear", align_corners=False), grid)
    with torch.no_grad():
        assert enc(torch.randn(2, 1, 128, 32)).shape == (2, 16)  # a 1 s local crop: grid 4 x 1
        assert enc(torch.randn(2, 1, 64, 250)).shape == (2, 16)
    with pytest.raises(ValueError, match=r"\(2, 1, 128, 20\)"):
        enc(torch.randn(2, 1, 128, 20))
    with pytest.raises(ValueError, match=r"\(2, 128, 126\)"):
        enc(torch.randn(2, 128, 126))


def test_channels_last_matches_contiguous():
    torch.manual_seed(2)
    enc = ModifiedResNet(layers=(1, 1, 1, 1), width=8, output_dim=32, heads=2)
    _randomise_bn(enc)
    enc.eval()
    x = torch.randn(3, 1, 128, 126)
    with torch.no_grad():
        y = enc(x)
        enc_cl = enc.to(memory_format=torch.channels_last)
        y_cl = enc_cl(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(y_cl, y, rtol=1e-4, atol=1e-5)
    # and it trains: a backward pass in channels_last
    enc_cl.train()
    enc_cl(x.contiguous(memory_format=torch.channels_last)).sum().backward()
    assert enc_cl.conv1.weight.grad is not None


# ----------------------------------------------------------------------------- heads

def test_projection_mlp_layout():
    head = ProjectionMLP((1024, 1024, 1024, 2048))
    linears = [m for m in head if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1024, 1024), (1024, 1024), (1024, 2048)]
    assert all(m.bias is None for m in linears)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in head) == 2 and isinstance(head[-1], nn.Linear)
    assert head(torch.randn(4, 1024)).shape == (4, 2048)
    pred = Predictor(2048, 256)
    assert pred(torch.randn(4, 2048)).shape == (4, 2048)
    with pytest.raises(ValueError, match=r"\(4, 512\)"):
        head(torch.randn(4, 512))


def test_dino_head_forms():
    torch.manual_seed(3)
    ref = DINOHead(64, (32, 32), 16, 100, form="reference")
    x = torch.randn(8, 64)
    logits = ref(x)
    assert logits.shape == (8, 100)
    assert logits.abs().max() <= 1 + 1e-5  # unit bottleneck against unit prototypes: cosines
    g = ref.last_layer.parametrizations.weight.original0
    assert not g.requires_grad and torch.all(g == 1)
    assert ref.last_layer.bias is None and not any(isinstance(m, nn.BatchNorm1d) for m in ref.modules())
    assert any(isinstance(m, nn.GELU) for m in ref.mlp)
    logits.sum().backward()
    assert ref.last_layer.parametrizations.weight.original1.grad is not None and g.grad is None
    # the release's plain head 1024-1024-256-4096 (here scaled down)
    pc = DINOHead(64, (32, 32), 16, 100, form="paper-code")
    dims = [(m.in_features, m.out_features) for m in pc.modules() if isinstance(m, nn.Linear)]
    assert dims == [(64, 32), (32, 32), (32, 16), (16, 100)]
    assert pc(x).shape == (8, 100)
    with pytest.raises(ValueError, match="form"):
        DINOHead(64, form="dino")


# ----------------------------------------------------------------------------- released checkpoints

def _spec_buffers() -> dict[str, torch.Tensor]:
    """The release's SpecModule buffers: MelSpectrogram(n_fft 1024, f_max 11025, slaney scale, normalized)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=1024, f_min=0, f_max=11025, n_mels=128,
                                                    normalized=True, mel_scale="slaney")
    return {"spec.spec.spectrogram.window": spec.spectrogram.window.clone(),
            "spec.spec.mel_scale.fb": spec.mel_scale.fb.clone()}


def _write_release(path, encoder: nn.Module, method: str, drop: str | None = None, reshape: str | None = None):
    """A checkpoint in the release's layout (docs/paper.md): backbone + spec buffers + other keys."""
    student = method in ("byol", "clustering")
    prefix = "student.module.backbone." if student else "module.backbone."
    state = {}
    for k, v in encoder.state_dict().items():
        if k == drop:
            continue
        if k == reshape:
            v = torch.zeros(v.shape[0] + 1, *v.shape[1:], dtype=v.dtype)
        state[prefix + "embedding." + k] = v.clone()
    for k, v in _spec_buffers().items():
        state[prefix + k] = v
    head = "student.module.head." if student else "module.head."
    state[head + "ops.0.weight"] = torch.randn(1024, 1024)
    state[head + "ops.1.running_mean"] = torch.zeros(1024)
    if student:
        state["teacher.embedding.conv1.weight"] = torch.randn(8, 1, 3, 3)
        state["teacher.spec.spec.mel_scale.fb"] = torch.zeros(513, 128)
        state["projector.ops.0.weight"] = torch.randn(256, 2048)
    torch.save({"model": state, "epoch": 7, "optimizer": {"lr": torch.tensor(1e-3)}}, path)
    return path


@pytest.mark.parametrize("method", ["contrastive", "byol", "clustering", "barlow_twins", "feature_stats"])
def test_load_released_round_trip(tmp_path, paper_encoder, method):
    path = _write_release(tmp_path / f"{method}.pt", paper_encoder, method)
    enc, info = load_released(path, method)
    assert info["in_channels"] == 1
    assert info["width"] == 16 and info["layers"] == (3, 4, 6, 3) and info["output_dim"] == 1024
    assert info["input_shape"] == (128, 126) and info["n_params"] == count_parameters(paper_encoder)
    fe = info["frontend"]
    assert fe["f_max"] == 11025.0 and fe["n_mels"] == 128 and fe["n_fft"] == 1024 and fe["hop_length"] == 512
    assert fe["dead_filters"] == 11 and fe["mel_norm"] is None
    assert not enc.training
    x = torch.randn(2, 1, 128, 126)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), paper_encoder(x), rtol=0, atol=0)


def test_load_released_accepts_our_method_names(tmp_path, paper_encoder):
    path = _write_release(tmp_path / "clustering.pt", paper_encoder, "clustering")
    _, info = load_released(path, "dino")
    assert info["method"] == "dino" and info["release_name"] == "clustering"
    assert info["prefix"] == "student.module.backbone."


@pytest.fixture(scope="module")
def small_encoder() -> ModifiedResNet:
    torch.manual_seed(4)
    return ModifiedResNet(layers=(1, 2, 1, 1), width=8, output_dim=64, heads=8).eval()


def test_load_released_infers_small_architecture(tmp_path, small_encoder):
    path = _write_release(tmp_path / "c.pt", small_encoder, "contrastive")
    enc, info = load_released(path, "contrastive")
    assert info["layers"] == (1, 2, 1, 1) and info["width"] == 8 and info["output_dim"] == 64
    x = torch.randn(1, 1, 128, 126)
    with torch.no_grad():
        torch.testing.assert_close(enc(x), small_encoder(x), rtol=0, atol=0)


def test_load_released_clear_errors(tmp_path, small_encoder):
    path = _write_release(tmp_path / "shape.pt", small_encoder, "contrastive", reshape="layer2.1.bn2.running_mean")
    with pytest.raises(ValueError, match=r"shape mismatch: module\.backbone\.embedding\.layer2\.1\.bn2\.running_mean: "
                                         r"checkpoint \(17,\) vs model \(16,\)"):
        load_released(path, "contrastive")
    path = _write_release(tmp_path / "missing.pt", small_encoder, "contrastive", drop="layer3.0.downsample.0.weight")
    with pytest.raises(ValueError, match=r"missing: module\.backbone\.embedding\.layer3\.0\.downsample\.0\.weight"):
        load_released(path, "contrastive")
    path = _write_release(tmp_path / "byol.pt", small_encoder, "byol")
    with pytest.raises(ValueError, match=r"no keys under 'module\.backbone\.'.*student\.module\.backbone\."):
        load_released(path, "contrastive")
    with pytest.raises(ValueError, match="feature_stats"):
        load_released(path, "swav")
    state = torch.load(tmp_path / "missing.pt", weights_only=True)
    state["model"]["module.backbone.embedding.layer9.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pt")
    with pytest.raises(ValueError, match=r"unexpected: module\.backbone\.embedding\.layer9\.0\.conv1\.weight"):
        load_released(tmp_path / "extra.pt", "contrastive")


def test_heads_deepcopy_for_an_ema_teacher():
    import copy

    head = DINOHead(32, (16,), 8, 20)
    teacher = copy.deepcopy(head)
    for p_t, p_s in zip(teacher.parameters(), head.parameters()):
        assert p_t.shape == p_s.shape and p_t.data_ptr() != p_s.data_ptr()
    x = torch.randn(4, 32)
    torch.testing.assert_close(teacher(x), head(x))
