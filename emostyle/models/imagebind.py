"""ImageBind huge's vision and audio branches (Girdhar et al., CVPR 2023), for retrieval (paper 3.1).

The paper embeds the input song and N candidate images in ImageBind's joint space and keeps
the most similar image (Eq. 1-2). Only the vision and audio branches are built; the text,
depth, thermal and IMU branches of `imagebind_huge.pth` are skipped by name (`IGNORED_BRANCHES`).

Each branch follows the official `ImageBindModel` and keeps its state-dict keys, so the
official checkpoint loads with `strict=True` once the skipped branches are set aside:
- preprocessor `modality_preprocessors.{m}`: patch embedding (vision: the image repeated into a
  2-frame video, Conv3d 2x14x14 stride 2x14x14; audio: Conv2d 16x16 stride 10 on the
  (1, 128 mel, 204 frame) fbank, then LayerNorm), a CLS token, learned position embeddings;
- trunk `modality_trunks.{m}`: pre-norm transformer blocks (`nn.MultiheadAttention` layout,
  audio with learned key/value bias tokens), vision with a LayerNorm before the blocks;
- head `modality_heads.{m}`: LayerNorm, CLS token, linear projection without bias;
- postprocessor `modality_postprocessors.{m}`: L2 normalisation; audio then multiplies by
  exp(log_logit_scale) = 20 (a fixed buffer), clipped at 100.
Audio clips are embedded one by one and their postprocessed embeddings averaged, as the
reference does for inputs with a clip axis.

Widths, depths, patch sizes and token counts come from the checkpoint's shapes; the number
of attention heads, which no shape records, comes from the official head widths (80 for
vision: 1280 / 16; 64 for audio: 768 / 12), so a reduced checkpoint must keep those.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ImageBind", "load_imagebind", "imagebind_available", "random_checkpoint",
           "tiny_imagebind", "IGNORED_BRANCHES", "HUGE", "TINY"]

IGNORED_BRANCHES = ("text", "depth", "thermal", "imu")
_PARTS = ("modality_preprocessors", "modality_trunks", "modality_heads", "modality_postprocessors")
_HEAD_DIM = {"vision": 80, "audio": 64}
_AUDIO_STRIDE = 10  # the official stem's stride; no shape records it
_VISION_FRAMES = 2  # an image is repeated into a 2-frame video before the 3D patch embedding
_MAX_LOGIT_SCALE = 100.0
_WEIGHT_NAME = "imagebind-huge"

# Sizes of the official huge model, and of the tiny profile (same layout, random weights).
HUGE = dict(vision_dim=1280, vision_blocks=32, audio_dim=768, audio_blocks=12, out_dim=1024)
TINY = dict(vision_dim=80, vision_blocks=1, audio_dim=64, audio_blocks=1, out_dim=32)


class _RepeatFrames(nn.Module):
    """(B, C, H, W) image -> (B, C, T, H, W) video of T identical frames (official PadIm2Video)."""

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(2).expand(-1, -1, self.frames, -1, -1)


class _PatchEmbed(nn.Module):
    """Convolutional patch embedding -> tokens (B, N, D), optionally layer-normed."""

    def __init__(self, proj: nn.Module, norm_layer: nn.Module | None = None):
        super().__init__()
        self.proj = proj
        self.norm_layer = norm_layer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x).flatten(2).transpose(1, 2)
        return x if self.norm_layer is None else self.norm_layer(x)


class _PosEmbed(nn.Module):
    """Learned position embeddings (1, 1 + N, D) for the CLS token and N patches."""

    def __init__(self, tokens: int, dim: int):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, tokens, dim))


class _Preprocessor(nn.Module):
    """Patch tokens with a CLS token in front, plus position embeddings: (B, 1 + N, D)."""

    def __init__(self, stem: _PatchEmbed, patches: int, dim: int):
        super().__init__()
        self.rgbt_stem = stem  # the official name, for both images and spectrograms
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding_helper = _PosEmbed(1 + patches, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.rgbt_stem(x)
        pos = self.pos_embedding_helper.pos_embed
        if tokens.shape[1] + 1 != pos.shape[1]:
            raise ValueError(f"input gives {tokens.shape[1]} patches; the checkpoint's position "
                             f"embeddings expect {pos.shape[1] - 1} (input shape {tuple(x.shape)})")
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)
        return torch.cat([cls, tokens], dim=1) + pos


class _Attention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameters (and its bias_k/v).

    With `bias_kv`, one learned key and value token is appended to every sequence, as
    `nn.MultiheadAttention(add_bias_kv=True)` does; the reference audio trunk uses it.
    """

    def __init__(self, dim: int, heads: int, bias_kv: bool):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        if bias_kv:
            self.bias_k = nn.Parameter(torch.zeros(1, 1, dim))
            self.bias_v = nn.Parameter(torch.zeros(1, 1, dim))
        else:
            self.bias_k = self.bias_v = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.expand(b, 1, d)], dim=1)
            v = torch.cat([v, self.bias_v.expand(b, 1, d)], dim=1)

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.unflatten(-1, (self.heads, d // self.heads)).transpose(1, 2)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm_1(x)), then x + mlp(norm_2(x))."""

    def __init__(self, dim: int, heads: int, bias_kv: bool):
        super().__init__()
        self.norm_1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = _Attention(dim, heads, bias_kv)
        self.norm_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_1(x))
        return x + self.mlp(self.norm_2(x))


class _Trunk(nn.Module):
    """Transformer trunk on tokens (B, L, D); vision has a LayerNorm before its blocks."""

    def __init__(self, dim: int, blocks: int, heads: int, pre_norm: bool, bias_kv: bool):
        super().__init__()
        # Official key `pre_transformer_layer.0` (vision); an empty Sequential for audio.
        norm = [nn.LayerNorm(dim, eps=1e-6)] if pre_norm else []
        self.pre_transformer_layer = nn.Sequential(*norm)
        self.blocks = nn.Sequential(*[_Block(dim, heads, bias_kv) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.pre_transformer_layer(x))


class _SelectCLS(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0]


class _Normalize(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1)


class _LogitScale(nn.Module):
    """Multiplies by exp(log_logit_scale), clipped at 100 (a fixed buffer for audio)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("log_logit_scale", torch.tensor(math.log(20.0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_logit_scale.exp().clamp(max=_MAX_LOGIT_SCALE) * x


def _head(dim: int, out_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim, eps=1e-6), _SelectCLS(), nn.Linear(dim, out_dim, bias=False))


class ImageBind(nn.Module):
    """ImageBind's vision and audio branches; sizes as in `HUGE` for the official checkpoint.

    `vision_patches` and `audio_patches` are the patch counts of a 224 px image (16 x 16 at
    patch 14) and of a 128 x 204 fbank (12 x 19 at patch 16, stride 10).
    """

    def __init__(self, vision_dim: int, vision_blocks: int, audio_dim: int, audio_blocks: int,
                 out_dim: int, vision_patch: int = 14, audio_patch: int = 16,
                 vision_patches: int = 256, audio_patches: int = 228):
        super().__init__()
        for name, dim in (("vision", vision_dim), ("audio", audio_dim)):
            if dim % _HEAD_DIM[name]:
                raise ValueError(f"{name} width {dim} is not a multiple of the official head width "
                                 f"{_HEAD_DIM[name]}; the number of heads cannot be inferred")
        self.out_dim = out_dim
        vision_stem = _PatchEmbed(nn.Sequential(
            _RepeatFrames(_VISION_FRAMES),
            nn.Conv3d(3, vision_dim, (_VISION_FRAMES, vision_patch, vision_patch),
                      stride=(_VISION_FRAMES, vision_patch, vision_patch), bias=False)))
        audio_stem = _PatchEmbed(nn.Conv2d(1, audio_dim, audio_patch, stride=_AUDIO_STRIDE, bias=False),
                                 nn.LayerNorm(audio_dim))
        self.modality_preprocessors = nn.ModuleDict({
            "vision": _Preprocessor(vision_stem, vision_patches, vision_dim),
            "audio": _Preprocessor(audio_stem, audio_patches, audio_dim)})
        self.modality_trunks = nn.ModuleDict({
            "vision": _Trunk(vision_dim, vision_blocks, vision_dim // _HEAD_DIM["vision"],
                             pre_norm=True, bias_kv=False),
            "audio": _Trunk(audio_dim, audio_blocks, audio_dim // _HEAD_DIM["audio"],
                            pre_norm=False, bias_kv=True)})
        self.modality_heads = nn.ModuleDict({"vision": _head(vision_dim, out_dim),
                                             "audio": _head(audio_dim, out_dim)})
        self.modality_postprocessors = nn.ModuleDict({
            "vision": _Normalize(), "audio": nn.Sequential(_Normalize(), _LogitScale())})

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = self.modality_preprocessors[name](x)
        x = self.modality_trunks[name](x)
        x = self.modality_heads[name](x)
        return self.modality_postprocessors[name](x)

    def embed_vision(self, images: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings (B, out_dim) of preprocessed images (B, 3, 224, 224)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected preprocessed images (B, 3, 224, 224); got {tuple(images.shape)}")
        return self._branch("vision", images)

    def embed_audio(self, clips: torch.Tensor) -> torch.Tensor:
        """Embeddings (B, out_dim) of fbank clips (B, S, 1, 128, 204): mean over the S clips of
        20 x the unit-norm clip embedding, as the reference (so not unit-norm themselves)."""
        if clips.ndim != 5 or clips.shape[2] != 1:
            raise ValueError(f"expected fbank clips (B, S, 1, 128, 204); got {tuple(clips.shape)}")
        b, s = clips.shape[:2]
        return self._branch("audio", clips.flatten(0, 1)).unflatten(0, (b, s)).mean(dim=1)


def _is_ignored(key: str) -> bool:
    return any(key.startswith(f"{part}.{branch}.") for part in _PARTS for branch in IGNORED_BRANCHES)


def _sizes(sd: dict) -> dict:
    """Constructor arguments of `ImageBind` read from a state dict's shapes."""
    def n_blocks(branch: str) -> int:
        prefix = f"modality_trunks.{branch}.blocks."
        ids = {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}
        return max(ids) + 1 if ids else 0

    pre = "modality_preprocessors"
    vision_conv = sd[f"{pre}.vision.rgbt_stem.proj.1.weight"]
    audio_conv = sd[f"{pre}.audio.rgbt_stem.proj.weight"]
    return dict(
        vision_dim=vision_conv.shape[0], vision_blocks=n_blocks("vision"), vision_patch=vision_conv.shape[-1],
        audio_dim=audio_conv.shape[0], audio_blocks=n_blocks("audio"), audio_patch=audio_conv.shape[-1],
        out_dim=sd["modality_heads.vision.2.weight"].shape[0],
        vision_patches=sd[f"{pre}.vision.pos_embedding_helper.pos_embed"].shape[1] - 1,
        audio_patches=sd[f"{pre}.audio.pos_embedding_helper.pos_embed"].shape[1] - 1)


def _from_state_dict(sd: dict, source: str) -> ImageBind:
    """Build the vision and audio branches from a full ImageBind state dict; load strictly."""
    kept = {k: v for k, v in sd.items() if not _is_ignored(k)}
    try:
        sizes = _sizes(kept)
    except KeyError as e:
        raise ValueError(f"{source} is not an ImageBind checkpoint in the official layout "
                         f"(facebookresearch/ImageBind imagebind_huge.pth): key {e} is missing") from None
    with torch.device("meta"):  # no random init of 700 M parameters only to overwrite them
        model = ImageBind(**sizes)
    try:
        model.load_state_dict(kept, strict=True, assign=True)
    except RuntimeError as e:
        raise ValueError(f"{source} does not match ImageBind's vision/audio layout; "
                         f"only the {', '.join(IGNORED_BRANCHES)} branches may be skipped:\n{e}") from None
    return model.eval()


def load_imagebind(path: str | Path | None = None, device: str | torch.device = "cpu",
                   dtype: torch.dtype | None = None) -> ImageBind:
    """The vision and audio branches of `imagebind_huge.pth` (or a reduced file in its layout).

    `path=None` takes the registry's verified `imagebind-huge` file and raises
    `registry.MissingWeightError` (naming `emostyle weights fetch imagebind-huge`) when absent.
    `dtype` defaults to float16 on CUDA, float32 elsewhere. Returns the model in eval mode.
    """
    if path is None:
        from emostyle import registry

        path = registry.path(_WEIGHT_NAME)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ImageBind checkpoint not found: {path}; "
                                f"run `emostyle weights fetch {_WEIGHT_NAME}`")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # an HTML page, a truncated download, an old non-zip file
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:
            raise ValueError(f"cannot read {path} as a PyTorch state dict ({e}); expected imagebind_huge.pth, "
                             f"re-fetch it with `emostyle weights fetch {_WEIGHT_NAME}`") from None
    if not isinstance(sd, dict):
        raise ValueError(f"{path} holds a {type(sd).__name__}, not a state dict of ImageBind")
    device = torch.device(device)
    if dtype is None:
        dtype = torch.float16 if device.type == "cuda" else torch.float32
    return _from_state_dict(sd, str(path)).to(device=device, dtype=dtype)


def imagebind_available(path_or_name: str | Path = _WEIGHT_NAME) -> bool:
    """Whether an ImageBind checkpoint is at hand: an existing file, or a fetched registry entry."""
    if Path(path_or_name).is_file():
        return True
    from emostyle import registry

    try:
        return registry.path(str(path_or_name)).is_file()
    except (FileNotFoundError, KeyError, ValueError):
        return False


def _shapes(vision_dim: int, vision_blocks: int, audio_dim: int, audio_blocks: int, out_dim: int) -> dict:
    """Official key -> shape for the vision and audio branches at the given sizes."""
    shapes = {
        "modality_preprocessors.vision.cls_token": (1, 1, vision_dim),
        "modality_preprocessors.vision.rgbt_stem.proj.1.weight": (vision_dim, 3, _VISION_FRAMES, 14, 14),
        "modality_preprocessors.vision.pos_embedding_helper.pos_embed": (1, 257, vision_dim),
        "modality_preprocessors.audio.cls_token": (1, 1, audio_dim),
        "modality_preprocessors.audio.rgbt_stem.proj.weight": (audio_dim, 1, 16, 16),
        "modality_preprocessors.audio.rgbt_stem.norm_layer.weight": (audio_dim,),
        "modality_preprocessors.audio.rgbt_stem.norm_layer.bias": (audio_dim,),
        "modality_preprocessors.audio.pos_embedding_helper.pos_embed": (1, 229, audio_dim),
        "modality_trunks.vision.pre_transformer_layer.0.weight": (vision_dim,),
        "modality_trunks.vision.pre_transformer_layer.0.bias": (vision_dim,),
    }
    for branch, dim, blocks in (("vision", vision_dim, vision_blocks), ("audio", audio_dim, audio_blocks)):
        for i in range(blocks):
            p = f"modality_trunks.{branch}.blocks.{i}."
            shapes.update({p + "attn.in_proj_weight": (3 * dim, dim), p + "attn.in_proj_bias": (3 * dim,),
                           p + "attn.out_proj.weight": (dim, dim), p + "attn.out_proj.bias": (dim,),
                           p + "norm_1.weight": (dim,), p + "norm_1.bias": (dim,),
                           p + "mlp.fc1.weight": (4 * dim, dim), p + "mlp.fc1.bias": (4 * dim,),
                           p + "mlp.fc2.weight": (dim, 4 * dim), p + "mlp.fc2.bias": (dim,),
                           p + "norm_2.weight": (dim,), p + "norm_2.bias": (dim,)})
            if branch == "audio":
                shapes.update({p + "attn.bias_k": (1, 1, dim), p + "attn.bias_v": (1, 1, dim)})
        shapes.update({f"modality_heads.{branch}.0.weight": (dim,), f"modality_heads.{branch}.0.bias": (dim,),
                       f"modality_heads.{branch}.2.weight": (out_dim, dim)})
    shapes["modality_postprocessors.audio.1.log_logit_scale"] = ()
    return shapes


def _is_norm(key: str) -> bool:
    module = key.split(".")[-2]
    return (module in ("norm_1", "norm_2", "norm_layer") or "pre_transformer_layer" in key
            or key.startswith("modality_heads") and module == "0")


def random_checkpoint(seed: int, vision_dim: int, vision_blocks: int, audio_dim: int,
                      audio_blocks: int, out_dim: int) -> dict[str, torch.Tensor]:
    """A random state dict in the official key layout (vision and audio branches), from `seed`.

    Drawn with numpy's PCG64 so that the same seed gives the same tensors on any torch
    version (the parity data in tests/data were made from these). Weights ~ N(0, 1/fan_in),
    norm weights ~ 1 + N(0, 0.1^2), biases and tokens ~ N(0, 0.1^2) / N(0, 0.5^2).
    """
    rng = np.random.default_rng(seed)
    sd = {}
    for key, shape in _shapes(vision_dim, vision_blocks, audio_dim, audio_blocks, out_dim).items():
        if key.endswith("log_logit_scale"):
            value = np.full(shape, math.log(20.0))
        elif _is_norm(key):
            value = (1.0 if key.endswith("weight") else 0.0) + 0.1 * rng.standard_normal(shape)
        elif key.endswith(("cls_token", "pos_embed", "bias_k", "bias_v")):
            value = 0.5 * rng.standard_normal(shape)
        elif key.endswith("bias"):
            value = 0.1 * rng.standard_normal(shape)
        else:
            value = rng.standard_normal(shape) / math.sqrt(np.prod(shape[1:]))
        sd[key] = torch.from_numpy(np.asarray(value, dtype=np.float32))
    return sd


def tiny_imagebind(seed: int = 0) -> ImageBind:
    """The tiny profile's ImageBind: the official layout at `TINY` sizes, random weights from `seed`."""
    return _from_state_dict(random_checkpoint(seed, **TINY), f"tiny ImageBind (seed {seed})")
