"""CLIP ViT (Radford et al. 2021): the image and text encoders of EmoStyle's guidance space (paper 3.3).

Module names and parameter shapes follow openai/CLIP `model.py`, so the state dict of the
official TorchScript archive `ViT-B-32.pt` loads strictly; the `transformers` layout
(`openai/clip-vit-base-patch32`) is converted to it. The architecture (widths, depths, patch,
resolution, context) is derived from the checkpoint's shapes, as openai's `build_model` does.

Images enter through `clip_input`, which has two paths:
- compat="official": `AvgPool2d(H // 32)(Upsample(scale_factor=7)(img))` on images in [-1, 1] with
  no CLIP mean/std, as the sound-guided, StyleCLIP and EmoStyle code feeds CLIP. The paper's
  numbers were made this way.
- compat="paper" (default): the CLIP preprocessing the encoder was trained with, made
  differentiable: antialiased bicubic resize to 224, [-1, 1] -> [0, 1], CLIP mean/std.

The tokenizer is CLIP's byte-level BPE (`bpe_simple_vocab_16e6.txt.gz`, registry name
`clip-bpe-vocab`) with start/end tokens and a context of 77.
"""

from __future__ import annotations

import functools
import gzip
import html
import re
import warnings
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from emostyle.models.checkpoint import check_download, load_network, load_strict

__all__ = ["CLIP", "Tokenizer", "load_clip", "load_tokenizer", "tiny_clip", "clip_input", "COMPAT"]

COMPAT = ("paper", "official")
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
# Keys the TorchScript archive stores beside the weights (as openai's build_model drops them).
_ARCHIVE_EXTRAS = ("input_resolution", "context_length", "vocab_size")


class QuickGELU(nn.Module):
    """x * sigmoid(1.702 x), the activation CLIP was trained with."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1 x), then x + mlp(ln_2 x); tokens (B, L, width)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_1 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict([
            ("c_fc", nn.Linear(width, width * 4)),
            ("gelu", QuickGELU()),
            ("c_proj", nn.Linear(width * 4, width)),
        ]))
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False, attn_mask=mask)[0]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, mask)
        return x


class VisionTransformer(nn.Module):
    """Patches -> class token -> transformer -> projection: images (B, 3, R, R) to (B, embed_dim)."""

    def __init__(self, resolution: int, patch: int, width: int, layers: int, heads: int, embed_dim: int):
        super().__init__()
        self.resolution = resolution
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch, stride=patch, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros((resolution // patch) ** 2 + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, heads)
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (B, grid**2, width)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


class CLIP(nn.Module):
    """CLIP with a ViT image tower and a causal text transformer; embeddings are not normalised."""

    def __init__(self, embed_dim: int, resolution: int, vision_patch: int, vision_width: int,
                 vision_layers: int, context_length: int, vocab_size: int, text_width: int,
                 text_layers: int):
        super().__init__()
        self.context_length = context_length
        # 64 channels per head in both towers, as in every released CLIP.
        self.visual = VisionTransformer(resolution, vision_patch, vision_width, vision_layers,
                                        max(1, vision_width // 64), embed_dim)
        self.transformer = Transformer(text_width, text_layers, max(1, text_width // 64))
        self.token_embedding = nn.Embedding(vocab_size, text_width)
        self.positional_embedding = nn.Parameter(torch.zeros(context_length, text_width))
        self.ln_final = nn.LayerNorm(text_width)
        self.text_projection = nn.Parameter(torch.zeros(text_width, embed_dim))
        self.logit_scale = nn.Parameter(torch.zeros([]))
        causal = torch.full((context_length, context_length), float("-inf")).triu_(1)
        self.register_buffer("causal_mask", causal, persistent=False)

    @property
    def resolution(self) -> int:
        return self.visual.resolution

    @property
    def embed_dim(self) -> int:
        return self.text_projection.shape[1]

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) features of preprocessed images (B, 3, R, R) (see `clip_input`)."""
        return self.visual(images.to(self.visual.conv1.weight.dtype))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) features of token ids (B, context_length) from `Tokenizer`."""
        x = self.token_embedding(tokens) + self.positional_embedding
        x = self.ln_final(self.transformer(x, self.causal_mask.to(x.dtype)))
        # The end token has the largest id, so argmax finds it in each sequence.
        return x[torch.arange(x.shape[0]), tokens.argmax(dim=-1)] @ self.text_projection


def clip_input(images: torch.Tensor, compat: str = "paper", resolution: int = 224) -> torch.Tensor:
    """Differentiable CLIP input (B, 3, resolution, resolution) from images (B, 3, H, W) in [-1, 1].

    compat="paper": antialiased bicubic resize, [0, 1], CLIP mean/std. compat="official": the
    reference code's nearest x7 upsampling then AvgPool2d(H // 32), in [-1, 1], unnormalised
    (224 px only for H a multiple of 32).
    """
    if compat not in COMPAT:
        raise ValueError(f"compat must be one of {COMPAT}, got {compat!r}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if compat == "official":
        return _official_resize(images)
    x = F.interpolate(images, size=(resolution, resolution), mode="bicubic", align_corners=False,
                      antialias=True)
    mean = images.new_tensor(MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(STD).view(1, 3, 1, 1)
    return ((x + 1) / 2 - mean) / std


def _official_resize(images: torch.Tensor) -> torch.Tensor:
    """AvgPool2d(k)(Upsample(scale_factor=7)(x)) with k = H // 32, as one matrix per axis.

    Nearest x7 upsampling then k-pooling is linear and separable; applying it as
    (out, H) matrices gives the same numbers without the 7x image (7168 px at 1024).
    """
    h, w = images.shape[-2:]
    if h != w or h % 32:
        raise ValueError(f"compat='official' needs square images with a side that is a multiple of 32 "
                         f"(as the reference AvgPool2d(size // 32)), got {h}x{w}")
    m = _upsample_pool_matrix(h, h // 32, images.dtype, images.device)
    return torch.einsum("ih,bchw,jw->bcij", m, images, m)


@functools.lru_cache(maxsize=8)
def _upsample_pool_matrix(size: int, k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    out = size * 7 // k
    source = torch.arange(out * k, device=device) // 7  # source pixel of each upsampled pixel
    m = torch.zeros(out, size, dtype=dtype, device=device)
    m.index_put_((torch.arange(out * k, device=device) // k, source),
                 torch.full((out * k,), 1.0 / k, dtype=dtype, device=device), accumulate=True)
    return m


# --- tokenizer -------------------------------------------------------------------------------

@functools.lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    """Reversible map of the 256 bytes onto printable characters (GPT-2 byte-level BPE)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    codes = printable + [256 + i for i in range(len(others))]
    return dict(zip(printable + others, map(chr, codes)))


class Tokenizer:
    """CLIP's BPE tokenizer: text -> ids (N, context_length) with start and end tokens, zero padded."""

    # 49152 tokens = 256 bytes + 256 bytes-at-word-end + 48894 merges + 2 special tokens.
    MAX_MERGES = 49152 - 256 - 2

    def __init__(self, bpe_path: str | Path, context_length: int = 77):
        path = Path(bpe_path)
        raw = path.read_bytes()
        try:
            text = (gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise ValueError(f"{path} is not CLIP's BPE merges file ({error}); expected "
                             f"bpe_simple_vocab_16e6.txt.gz: `emostyle weights fetch clip-bpe-vocab`") from None
        lines = text.split("\n")[1: self.MAX_MERGES + 1]  # the first line is a version header
        merges = [tuple(line.split()) for line in lines if line.strip()]
        if any(len(m) != 2 for m in merges):
            raise ValueError(f"{path} has lines that are not 'left right' merges; not a BPE merges file")
        self._setup(merges, context_length)

    @classmethod
    def from_merges(cls, merges: list[tuple[str, str]], context_length: int = 77) -> Tokenizer:
        """A tokenizer from merges in rank order (e.g. none: bytes only, for tiny models)."""
        tokenizer = cls.__new__(cls)
        tokenizer._setup(list(merges), context_length)
        return tokenizer

    def _setup(self, merges: list[tuple[str, str]], context_length: int) -> None:
        byte_chars = list(_bytes_to_unicode().values())
        vocab = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m) for m in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot, self.eot = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        self.context_length = context_length
        import regex  # \p{L} classes; a dependency of transformers and of openai/CLIP

        self._pattern = regex.compile(
            r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
            regex.IGNORECASE)

    def __len__(self) -> int:
        return len(self.encoder)

    @functools.lru_cache(maxsize=10_000)
    def _bpe(self, token: str) -> tuple[str, ...]:
        word = (*token[:-1], token[-1] + "</w>")
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(self, text: str) -> list[int]:
        """BPE ids of `text` without start/end tokens (lower-cased, whitespace collapsed)."""
        byte_map = _bytes_to_unicode()
        ids = []
        for token in self._pattern.findall(_clean(text)):
            chars = "".join(byte_map[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(chars))
        return ids

    def __call__(self, texts: str | list[str], truncate: bool = False) -> torch.Tensor:
        """Token ids (N, context_length), int64: start, BPE ids, end, zeros."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot, *self.encode(text), self.eot]
            if len(ids) > self.context_length:
                if not truncate:
                    raise ValueError(f"text of {len(ids)} tokens exceeds CLIP's context of "
                                     f"{self.context_length}; shorten it or pass truncate=True: {text[:60]!r}...")
                ids = ids[: self.context_length - 1] + [self.eot]
            out[row, : len(ids)] = torch.tensor(ids)
        return out


def _clean(text: str) -> str:
    """openai/CLIP's basic_clean + whitespace_clean + lower (ftfy when installed)."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:  # ftfy only repairs mis-decoded text (mojibake); plain text is unchanged
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip().lower()


# --- checkpoints -----------------------------------------------------------------------------

def _architecture(state: Mapping[str, torch.Tensor], name: str) -> dict:
    """CLIP constructor arguments from a state dict in openai's layout."""
    if "visual.proj" not in state:
        kind = "a ResNet CLIP" if "visual.attnpool.c_proj.weight" in state else "not a CLIP state dict"
        raise ValueError(f"{name}: expected a CLIP ViT checkpoint (keys visual.proj, visual.conv1.weight, "
                         f"text_projection, ...); this is {kind}")
    try:
        patch = state["visual.conv1.weight"].shape[-1]
        grid = round((state["visual.positional_embedding"].shape[0] - 1) ** 0.5)
        return dict(
            embed_dim=state["text_projection"].shape[1],
            resolution=patch * grid,
            vision_patch=patch,
            vision_width=state["visual.conv1.weight"].shape[0],
            vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            text_width=state["ln_final.weight"].shape[0],
            text_layers=_count_blocks(state, "transformer.resblocks."),
        )
    except KeyError as key:
        raise ValueError(f"{name}: CLIP checkpoint lacks {key}; the file is incomplete or another model") from None


def _count_blocks(state: Mapping[str, torch.Tensor], prefix: str) -> int:
    return len({k[len(prefix):].split(".")[0] for k in state if k.startswith(prefix)})


_HF_LAYER = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
             "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
_HF_NAMES = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.pre_layrnorm.weight": "visual.ln_pre.weight",  # sic: transformers' spelling
    "vision_model.pre_layrnorm.bias": "visual.ln_pre.bias",
    "vision_model.post_layernorm.weight": "visual.ln_post.weight",
    "vision_model.post_layernorm.bias": "visual.ln_post.bias",
    "logit_scale": "logit_scale",
}


def _from_transformers(hf: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openai-layout state dict from a transformers CLIPModel state dict."""
    hf = {k.removeprefix("clip."): v for k, v in hf.items() if not k.endswith("position_ids")}
    state = {ours: hf[theirs] for theirs, ours in _HF_NAMES.items() if theirs in hf}
    state["text_projection"] = hf["text_projection.weight"].t()
    state["visual.proj"] = hf["visual_projection.weight"].t()
    layer = re.compile(r"(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)\.(weight|bias)$")
    qkv: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in hf.items():
        match = layer.match(key)
        if not match:
            continue
        tower, index, module, kind = match.groups()
        prefix = f"{'visual.' if tower == 'vision' else ''}transformer.resblocks.{index}."
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault(f"{prefix}attn.in_proj_{kind}", {})[module[-6]] = value
        else:
            state[f"{prefix}{_HF_LAYER[module]}.{kind}"] = value
    for key, parts in qkv.items():
        state[key] = torch.cat([parts["q"], parts["k"], parts["v"]])
    return state


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Weights from an openai TorchScript archive, a torch state dict, or a transformers file/folder."""
    if path.is_dir():
        files = [path / n for n in ("model.safetensors", "pytorch_model.bin") if (path / n).is_file()]
        if not files:
            raise FileNotFoundError(f"{path} holds neither model.safetensors nor pytorch_model.bin "
                                    f"(a transformers CLIP folder)")
        path = files[0]
    check_download(path, "CLIP weights", "clip-vit-b-32")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        if zipfile.is_zipfile(path) and any(n.endswith("constants.pkl") for n in zipfile.ZipFile(path).namelist()):
            with warnings.catch_warnings():  # torch deprecates TorchScript; the release is one
                warnings.simplefilter("ignore", DeprecationWarning)
                return dict(torch.jit.load(str(path), map_location="cpu").state_dict())
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"cannot read {path} as CLIP weights ({type(error).__name__}: {error}); "
                         f"the download may be truncated: `emostyle weights fetch clip-vit-b-32`") from None
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a CLIP state dict")
    return dict(state)


def _build(state: Mapping[str, torch.Tensor], name: str) -> CLIP:
    state = {k: v for k, v in state.items() if k not in _ARCHIVE_EXTRAS}
    if any(k.startswith(("text_model.", "vision_model.", "clip.text_model.")) for k in state):
        state = _from_transformers(state)
    config = _architecture(state, name)
    # The official archive stores fp16 weights; the kit computes in float32 on every device.
    state = {k: v.float() for k, v in state.items()}
    return load_strict(CLIP(**config), state, f"{name} (the CLIP {config})").eval().requires_grad_(False)


def load_clip(path_or_state: str | Path | Mapping | None = None, device: str | torch.device = "cpu") -> CLIP:
    """CLIP from `ViT-B-32.pt` (TorchScript archive), a state dict, or transformers weights.

    None: the registry's `clip-vit-b-32`. Files are loaded once per (path, device) and shared.
    Returns the model in eval mode, float32, parameters frozen.
    """
    return load_network(path_or_state, device, "clip-vit-b-32", _read_state, _build)


def load_tokenizer(path: str | Path | None = None) -> Tokenizer:
    """CLIP's tokenizer from `bpe_simple_vocab_16e6.txt.gz` (None: registry `clip-bpe-vocab`, the
    file recorded for every run that asks, though it is read once)."""
    if path is None:
        from emostyle import registry

        path = registry.path("clip-bpe-vocab")
    return _tokenizer(str(path))


@functools.lru_cache(maxsize=2)
def _tokenizer(path: str) -> Tokenizer:
    return Tokenizer(path)


def tiny_clip(seed: int = 0, vocab_size: int = 49408, embed_dim: int = 32) -> CLIP:
    """A small random CLIP (width 64, 2 layers, 224 px in 32 px patches) for the tiny profile and tests."""
    generator = torch.Generator().manual_seed(seed)
    model = CLIP(embed_dim=embed_dim, resolution=224, vision_patch=32, vision_width=64, vision_layers=2,
                 context_length=77, vocab_size=vocab_size, text_width=64, text_layers=2)
    state = {}
    for key, value in model.state_dict().items():
        if key.endswith(("ln_1.weight", "ln_2.weight", "ln_pre.weight", "ln_post.weight", "ln_final.weight")):
            state[key] = torch.ones_like(value)
        elif key.endswith("bias") and "ln" in key:
            state[key] = torch.zeros_like(value)
        elif key == "logit_scale":
            state[key] = torch.tensor(4.6052)  # ln(100), the released models' value
        else:
            fan = value.shape[-1] if value.ndim > 1 else value.shape[0]
            state[key] = torch.randn(value.shape, generator=generator) * fan**-0.5
    return _build(state, f"tiny_clip(seed={seed})")
