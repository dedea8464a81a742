"""The paper's backbone, a CLIP-style "modified ResNet" on log-mel input, and a loader of its weights.

Meseguer-Brocal et al., ICASSP 2024 (released as ``ssl_framework/models/resnet.py`` in
deezer/multi-view-ssl-benchmark), after Radford et al. 2021, CLIP (openai/CLIP
``clip/model.py``, ``ModifiedResNet``):
- a three-conv stem (1 -> w/2 stride 2, w/2 -> w/2, w/2 -> w) and a 2x2 average pool;
- bottleneck blocks (3, 4, 6, 3) with planes w, 2w, 4w, 8w and expansion 4; strided blocks are
  anti-aliased: the 3x3 conv keeps stride 1 and an average pool of the stride follows it,
  and the shortcut is avgpool -> 1x1 conv -> BN (``downsample`` children "-1", "0", "1");
- attention pooling: the mean token is prepended to the (F/32)(T/32) grid tokens, a learned
  positional embedding added, and one multi-head attention query (the mean token) gives the
  embedding through ``c_proj``.
Module names equal the release's, so its state dict maps 1:1 (``load_released``). The
release keeps PyTorch's default initialisation (CLIP's own ``initialize_parameters`` is not
part of its ``ModifiedResNet``); so do we.
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
import torchaudio
from torch import Tensor, nn

from workbench.config import AudioConfig, EncoderConfig
from workbench.files import read_checkpoint


def count_parameters(module: nn.Module) -> int:
    """All parameters of ``module`` (trainable or not)."""
    return sum(p.numel() for p in module.parameters())


def grid_shape(n_mels: int, n_frames: int) -> tuple[int, int]:
    """Size of the last feature map for an (F, T) input: what the strided layers actually give.

    conv1 (3x3, stride 2, padding 1) gives ceil(n / 2); the stem's 2x2 pool and the three
    strided stages each floor-halve: floor((n + 1) / 32). (128, 126) -> (4, 3). The release sizes
    its embedding with n // 32, which differs when n = 31 (mod 32), e.g. 63 frames: 2 here, 1 there
    (the release fails on such an input); we use the real arithmetic.
    """
    def out(n: int) -> int:
        n = (n + 1) // 2  # conv1, stride 2
        for _ in range(4):  # stem avgpool, layer2, layer3, layer4
            n //= 2
        return n
    return out(n_mels), out(n_frames)


class Bottleneck(nn.Module):
    """CLIP's anti-aliased bottleneck: (B, inplanes, H, W) -> (B, 4 planes, H / stride, W / stride)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride > 1 or inplanes != planes * self.expansion:
            # "-1" first: the names (and so the state-dict keys) of CLIP and the release.
            self.downsample = nn.Sequential(OrderedDict([
                ("-1", nn.AvgPool2d(stride)),
                ("0", nn.Conv2d(inplanes, planes * self.expansion, 1, stride=1, bias=False)),
                ("1", nn.BatchNorm2d(planes * self.expansion)),
            ]))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu(out + identity)


class AttentionPool2d(nn.Module):
    """(B, C, H, W) -> (B, output_dim): one attention query (the mean token) over the H W tokens.

    Same parameters and result as CLIP's / the release's ``F.multi_head_attention_forward``
    call returning token 0 (checked in tests), computed for the single query only.
    ``positional_embedding`` has grid[0] * grid[1] + 1 rows (row 0 for the mean token). An
    input whose grid differs from the construction grid (e.g. DINO's short local crops) gets
    the grid rows bilinearly interpolated to its grid (as ViTs do for other resolutions);
    the mean-token row is kept.
    """

    def __init__(self, grid: tuple[int, int], embed_dim: int, num_heads: int, output_dim: int):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"attention pooling: embed_dim {embed_dim} is not divisible by heads {num_heads}")
        self.grid = tuple(grid)
        self.positional_embedding = nn.Parameter(torch.randn(grid[0] * grid[1] + 1, embed_dim) / embed_dim ** 0.5)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)
        self.num_heads = num_heads

    def _positions(self, h: int, w: int) -> Tensor:
        """(h w + 1, C) positional embedding for an (h, w) grid."""
        pos = self.positional_embedding
        if (h, w) == self.grid:
            return pos
        gh, gw = self.grid
        grid = pos[1:].T.reshape(1, -1, gh, gw)  # (1, C, gh, gw)
        grid = F.interpolate(grid, size=(h, w), mode="bilinear", align_corners=False)
        return torch.cat([pos[:1], grid.reshape(pos.shape[1], h * w).T], dim=0)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)  # (B, HW, C)
        x = torch.cat([x.mean(dim=1, keepdim=True), x], dim=1)  # (B, HW+1, C)
        x = x + self._positions(h, w).to(x.dtype)
        d = c // self.num_heads
        q = self.q_proj(x[:, :1]).view(b, 1, self.num_heads, d).transpose(1, 2)  # (B, heads, 1, d)
        k = self.k_proj(x).view(b, -1, self.num_heads, d).transpose(1, 2)  # (B, heads, HW+1, d)
        v = self.v_proj(x).view(b, -1, self.num_heads, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (B, heads, 1, d)
        return self.c_proj(out.transpose(1, 2).reshape(b, c))


class ModifiedResNet(nn.Module):
    """(B, 1, F, T) log-mel -> (B, output_dim) embedding. About 2.8 M parameters at width 16.

    ``input_shape`` = (F, T) sizes the positional embedding (grid_shape(F, T)); another input
    size at forward time works through interpolated positions (see AttentionPool2d). Any F, T
    of at least 32 (the grid must be at least 1 x 1).
    """

    def __init__(self, layers: Sequence[int] = (3, 4, 6, 3), width: int = 16, output_dim: int = 1024,
                 heads: int = 8, input_shape: tuple[int, int] = (128, 126), in_channels: int = 1):
        super().__init__()
        layers = tuple(int(n) for n in layers)
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"ModifiedResNet needs four stages of at least one block, got layers={layers}")
        if width < 2 or width % 2:
            raise ValueError(f"ModifiedResNet width must be even and >= 2, got {width}")
        self.layers, self.width, self.output_dim, self.heads = layers, width, output_dim, heads
        self.input_shape = (int(input_shape[0]), int(input_shape[1]))
        self.in_channels = in_channels
        grid = grid_shape(*self.input_shape)
        if min(grid) < 1:
            raise ValueError(f"input_shape {self.input_shape} is too small: the final grid would be {grid}")
        # the 3-layer stem
        self.conv1 = nn.Conv2d(in_channels, width // 2, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width // 2)
        self.conv2 = nn.Conv2d(width // 2, width // 2, kernel_size=3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width // 2)
        self.conv3 = nn.Conv2d(width // 2, width, kernel_size=3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(width)
        self.avgpool = nn.AvgPool2d(2)
        self.relu = nn.ReLU(inplace=True)
        self._inplanes = width
        self.layer1 = self._make_layer(width, layers[0])
        self.layer2 = self._make_layer(width * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(width * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(width * 8, layers[3], stride=2)
        self.embed_dim = width * 32  # 8w planes x expansion 4
        self.attnpool = AttentionPool2d(grid, self.embed_dim, heads, output_dim)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        stage = [Bottleneck(self._inplanes, planes, stride)]
        self._inplanes = planes * Bottleneck.expansion
        stage += [Bottleneck(self._inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def forward_features(self, x: Tensor) -> Tensor:
        """(B, 1, F, T) -> (B, 32 w, F', T') the last feature map, before attention pooling."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ModifiedResNet expects (B, {self.in_channels}, F, T), got {tuple(x.shape)}")
        if min(grid_shape(x.shape[2], x.shape[3])) < 1:
            raise ValueError(f"ModifiedResNet input {tuple(x.shape)} is too small (F and T must be >= 32)")
        x = x.to(self.conv1.weight.dtype)
        for conv, bn in ((self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)):
            x = self.relu(bn(conv(x)))
        x = self.avgpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.attnpool(self.forward_features(x))

    def extra_repr(self) -> str:
        return (f"layers={self.layers}, width={self.width}, output_dim={self.output_dim}, heads={self.heads}, "
                f"input_shape={self.input_shape}, params={count_parameters(self) / 1e6:.2f}M")


def build_encoder(enc: EncoderConfig, audio: AudioConfig) -> ModifiedResNet:
    """The backbone of a run config: input (n_mels, frames of one segment)."""
    return ModifiedResNet(layers=tuple(enc.layers), width=enc.width, output_dim=enc.output_dim, heads=enc.heads,
                          input_shape=(audio.n_mels, audio.n_frames))


# Released checkpoint names (deezer/multi-view-ssl-benchmark) -> our method names, and where
# each file keeps the backbone (docs/paper.md, "Layout of the released checkpoints").
RELEASE_NAMES = {"contrastive": "simclr", "byol": "byol", "clustering": "dino", "barlow_twins": "barlow_twins",
                 "feature_stats": "vicreg"}
RELEASE_PREFIX = {"simclr": "module.backbone.", "barlow_twins": "module.backbone.", "vicreg": "module.backbone.",
                  "byol": "student.module.backbone.", "dino": "student.module.backbone."}
_SPEC_KEYS = ("spec.spec.spectrogram.window", "spec.spec.mel_scale.fb")


def _frontend_from_buffers(window: Tensor | None, fb: Tensor | None, sample_rate: int = 16_000) -> dict:
    """The mel front end the spec buffers imply: n_fft from the window, n_mels, f_max and the
    filter normalisation found by rebuilding torchaudio's filterbank for candidate settings."""
    info: dict = {"sample_rate": sample_rate}
    if window is not None:
        info["n_fft"] = int(window.numel())
        info["hop_length"] = int(window.numel()) // 2  # torchaudio's default, which the release uses
    if fb is None:
        return info
    fb = fb.float()
    n_freqs, n_mels = fb.shape
    info.update(n_mels=int(n_mels), f_min=0.0, dead_filters=int((fb.abs().sum(dim=0) == 0).sum()))
    for f_max in (11025.0, sample_rate / 2):
        for norm in (None, "slaney"):
            with warnings.catch_warnings():  # f_max above Nyquist warns about the dead filters we count
                warnings.simplefilter("ignore")
                cand = torchaudio.functional.melscale_fbanks(n_freqs, 0.0, f_max, n_mels, sample_rate,
                                                             norm=norm, mel_scale="slaney")
            if torch.allclose(cand, fb, rtol=1e-4, atol=1e-6):
                info.update(f_max=f_max, mel_norm=norm, mel_scale="slaney")
                return info
    info["f_max"] = None  # no candidate matched: report what we know
    return info


def load_released(path: str | os.PathLike, method: str, heads: int = 8) -> tuple[ModifiedResNet, dict]:
    """Load a released checkpoint of the paper into a ``ModifiedResNet`` (eval mode, CPU).

    ``method``: the release's file name (contrastive, byol, clustering, barlow_twins,
    feature_stats) or ours (simclr, byol, dino, barlow_twins, vicreg). The file is a dict with
    a ``"model"`` state dict (or the state dict itself), read with ``weights_only=True``. The
    backbone lives under ``module.backbone.`` (student ``student.module.backbone.`` for BYOL and
    DINO); teacher, head and predictor keys are ignored. Width, layers, output size and input
    grid are inferred from the shapes (heads are not stored: ``heads``, 8 in the release);
    every backbone key and shape is then checked, and any missing, unexpected or mismatched
    key raises a ValueError listing them.

    Returns (encoder, info): info holds ``method``, ``prefix``, ``width``, ``layers``,
    ``output_dim``, ``heads``, ``input_shape``, ``n_params`` and ``frontend``, the mel settings
    the spec buffers imply (``f_max`` 11025.0, ``dead_filters`` 11, ``mel_norm``...): the
    input the weights were trained on; ``AudioConfig(f_max=11025.0)`` reproduces its f_max.
    """
    ours = RELEASE_NAMES.get(method, method)
    if ours not in RELEASE_PREFIX:
        raise ValueError(f"unknown method {method!r}; expected one of "
                         f"{', '.join(sorted(set(RELEASE_NAMES) | set(RELEASE_PREFIX)))}")
    prefix = RELEASE_PREFIX[ours]
    ckpt = read_checkpoint(path)
    state = ckpt.get("model", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a dict with a 'model' state dict, got {type(ckpt).__name__}")
    sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not sub:
        found = sorted({k[:k.index("backbone.") + len("backbone.")] for k in state if "backbone." in k})
        raise ValueError(f"{path}: no keys under {prefix!r} (expected for {ours}); backbone prefixes found: "
                         f"{found or 'none'}. Is this another method's checkpoint?")
    emb = {k[len("embedding."):]: v for k, v in sub.items() if k.startswith("embedding.")}
    other = sorted(k for k in sub if not k.startswith("embedding.") and k not in _SPEC_KEYS)

    def shape(key: str) -> tuple[int, ...]:
        if key not in emb:
            raise ValueError(f"{path}: backbone key {prefix}embedding.{key} is missing; cannot infer the architecture")
        return tuple(emb[key].shape)

    width = shape("conv3.weight")[0]
    in_channels = shape("conv1.weight")[1]
    n_layers = []
    for i in range(1, 5):
        blocks = {int(k.split(".")[1]) for k in emb if k.startswith(f"layer{i}.")}
        n_layers.append(max(blocks) + 1 if blocks else 0)
    output_dim = shape("attnpool.c_proj.weight")[0]
    rows = shape("attnpool.positional_embedding")[0]
    fb = sub.get("spec.spec.mel_scale.fb")
    window = sub.get("spec.spec.spectrogram.window")
    frontend = _frontend_from_buffers(window, fb)
    n_mels = frontend.get("n_mels", 128)
    n_fft = frontend.get("n_fft", 1024)
    n_frames = 4 * 16_000 // (n_fft // 2) + 1  # the release's SpecModule.n_frames for 4 s at 16 kHz
    gh, gw = grid_shape(n_mels, n_frames)
    if gh * gw + 1 != rows:  # another segment length: any T with the stored grid width
        gh = grid_shape(n_mels, 32)[0]
        if gh < 1 or (rows - 1) % gh:
            raise ValueError(f"{path}: positional embedding has {rows} rows, not gh*gw + 1 for n_mels={n_mels}")
        n_frames = 32 * ((rows - 1) // gh)
    if min(n_layers) < 1:
        raise ValueError(f"{path}: backbone stages found with blocks {n_layers}; expected four non-empty stages")
    encoder = ModifiedResNet(layers=tuple(n_layers), width=width, output_dim=output_dim, heads=heads,
                             input_shape=(n_mels, n_frames), in_channels=in_channels)
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(emb))
    unexpected = sorted(set(emb) - set(expected)) + other
    mismatched = [f"{k}: checkpoint {tuple(emb[k].shape)} vs model {tuple(expected[k].shape)}"
                  for k in sorted(set(expected) & set(emb)) if emb[k].shape != expected[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"{path}: the backbone under {prefix!r} does not match ModifiedResNet(layers={tuple(n_layers)}, "
                 f"width={width}, output_dim={output_dim}, input_shape={(n_mels, n_frames)})"]
        lines += [f"  missing: {prefix}embedding.{k}" for k in missing]
        lines += [f"  unexpected: {prefix}{k if k in other else 'embedding.' + k}" for k in unexpected]
        lines += [f"  shape mismatch: {prefix}embedding.{m}" for m in mismatched]
        raise ValueError("\n".join(lines))
    encoder.load_state_dict(emb, strict=True)
    encoder.eval()
    info = {"method": ours, "release_name": {v: k for k, v in RELEASE_NAMES.items()}[ours], "prefix": prefix,
            "width": width, "layers": tuple(n_layers), "in_channels": in_channels, "output_dim": output_dim,
            "heads": heads, "input_shape": (n_mels, n_frames), "n_params": count_parameters(encoder),
            "frontend": frontend}
    return encoder, info
