"""CLIP ViT: checkpoint layouts, parity with transformers' CLIPModel, image paths, tokenizer.

No real weights are downloadable here: parity runs on a random, narrow CLIP in openai's key
layout (tiny_clip: width 64, 2 layers, 224 px / 32 px patches), converted to transformers'
layout by an independent mapping written below, with transformers as the reference.
"""

import gzip
import json
import os
from pathlib import Path

import pytest
import torch

from emostyle.models.clip import Tokenizer, clip_input, load_clip, tiny_clip

VOCAB = 600  # a small vocabulary keeps the random checkpoint small; the eot token is the last id


@pytest.fixture(scope="module")
def openai_state():
    return {k: v.clone() for k, v in tiny_clip(seed=3, vocab_size=VOCAB).state_dict().items()}


def _to_transformers(state):
    """openai layout -> transformers CLIPModel layout (the reverse of what the kit reads)."""
    hf = {
        "text_model.embeddings.token_embedding.weight": state["token_embedding.weight"],
        "text_model.embeddings.position_embedding.weight": state["positional_embedding"],
        "text_model.final_layer_norm.weight": state["ln_final.weight"],
        "text_model.final_layer_norm.bias": state["ln_final.bias"],
        "vision_model.embeddings.class_embedding": state["visual.class_embedding"],
        "vision_model.embeddings.patch_embedding.weight": state["visual.conv1.weight"],
        "vision_model.embeddings.position_embedding.weight": state["visual.positional_embedding"],
        "vision_model.pre_layrnorm.weight": state["visual.ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": state["visual.ln_pre.bias"],
        "vision_model.post_layernorm.weight": state["visual.ln_post.weight"],
        "vision_model.post_layernorm.bias": state["visual.ln_post.bias"],
        "text_projection.weight": state["text_projection"].T,
        "visual_projection.weight": state["visual.proj"].T,
        "logit_scale": state["logit_scale"],
    }
    for ours, theirs in (("transformer", "text_model"), ("visual.transformer", "vision_model")):
        i = 0
        while f"{ours}.resblocks.{i}.ln_1.weight" in state:
            o, t = f"{ours}.resblocks.{i}.", f"{theirs}.encoder.layers.{i}."
            for kind in ("weight", "bias"):
                q, k, v = state[o + f"attn.in_proj_{kind}"].chunk(3)
                hf[t + f"self_attn.q_proj.{kind}"] = q
                hf[t + f"self_attn.k_proj.{kind}"] = k
                hf[t + f"self_attn.v_proj.{kind}"] = v
                hf[t + f"self_attn.out_proj.{kind}"] = state[o + f"attn.out_proj.{kind}"]
                hf[t + f"layer_norm1.{kind}"] = state[o + f"ln_1.{kind}"]
                hf[t + f"layer_norm2.{kind}"] = state[o + f"ln_2.{kind}"]
                hf[t + f"mlp.fc1.{kind}"] = state[o + f"mlp.c_fc.{kind}"]
                hf[t + f"mlp.fc2.{kind}"] = state[o + f"mlp.c_proj.{kind}"]
            i += 1
    return hf


def _hf_model(state):
    transformers = pytest.importorskip("transformers")
    common = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=1,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    config = transformers.CLIPConfig(
        text_config=dict(common, vocab_size=VOCAB, max_position_embeddings=77, bos_token_id=VOCAB - 2,
                         eos_token_id=VOCAB - 1, pad_token_id=0),
        vision_config=dict(common, image_size=224, patch_size=32),
        projection_dim=32,
    )
    model = transformers.CLIPModel(config).eval()
    missing, unexpected = model.load_state_dict(_to_transformers(state), strict=False)
    assert not unexpected and all("position_ids" in k for k in missing)
    return model


def _features(out):
    return out if torch.is_tensor(out) else out.pooler_output


def _tokens(seed):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.zeros(3, 77, dtype=torch.long)
    for row, n in enumerate((5, 12, 77)):
        tokens[row, :n] = torch.randint(1, VOCAB - 2, (n,), generator=g)
        tokens[row, 0], tokens[row, n - 1] = VOCAB - 2, VOCAB - 1  # sot, eot (largest id)
    return tokens


def test_parity_with_transformers(openai_state):
    ours, theirs = load_clip(openai_state), _hf_model(openai_state)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tokens = _tokens(1)
    with torch.no_grad():
        img_ref = _features(theirs.get_image_features(pixel_values=images))
        txt_ref = _features(theirs.get_text_features(input_ids=tokens))
        img, txt = ours.encode_image(images), ours.encode_text(tokens)
    assert img.shape == (2, 32) and txt.shape == (3, 32)
    assert torch.allclose(img, img_ref, atol=1e-5), (img - img_ref).abs().max()
    assert torch.allclose(txt, txt_ref, atol=1e-5), (txt - txt_ref).abs().max()


def test_transformers_layout_loads_to_the_same_weights(openai_state, tmp_path):
    hf_state = _hf_model(openai_state).state_dict()
    model = load_clip(hf_state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, openai_state[key]), key
    safetensors = pytest.importorskip("safetensors.torch")
    safetensors.save_file({k: v.contiguous() for k, v in hf_state.items()}, str(tmp_path / "model.safetensors"))
    assert torch.equal(load_clip(tmp_path).visual.proj, openai_state["visual.proj"])


class _Holder(torch.nn.Module):
    """Nested modules whose state dict has the given keys (a stand-in for openai's JIT archive)."""

    def __init__(self, state):
        super().__init__()
        for key, value in state.items():
            module = self
            *path, leaf = key.split(".")
            for part in path:
                if not hasattr(module, part):
                    module.add_module(part, torch.nn.Module())
                module = getattr(module, part)
            module.register_buffer(leaf, value)

    def forward(self) -> int:
        return 0


def test_torchscript_archive_round_trip(openai_state, tmp_path):
    # The released ViT-B-32.pt is a TorchScript archive of fp16 weights plus three int entries.
    half = {k: v.half() for k, v in openai_state.items()}
    extras = {"input_resolution": torch.tensor(224), "context_length": torch.tensor(77),
              "vocab_size": torch.tensor(VOCAB)}
    torch.jit.save(torch.jit.script(_Holder({**half, **extras})), str(tmp_path / "ViT-B-32.pt"))
    model = load_clip(tmp_path / "ViT-B-32.pt")
    assert model.visual.conv1.weight.dtype == torch.float32
    assert torch.equal(model.visual.proj, half["visual.proj"].float())
    assert load_clip(tmp_path / "ViT-B-32.pt") is model  # loaded once per (path, device)


def test_bad_checkpoints_are_clear_errors(openai_state, tmp_path):
    html = tmp_path / "page.pt"
    html.write_text("<!DOCTYPE html><html>quota exceeded</html>")
    with pytest.raises(ValueError, match="HTML"):
        load_clip(html)
    torch.save(openai_state, tmp_path / "full.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((tmp_path / "full.pt").read_bytes()[:5000])
    with pytest.raises(ValueError, match="truncated"):
        load_clip(truncated)
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch clip-vit-b-32"):
        load_clip(tmp_path / "absent.pt")
    broken = dict(openai_state)
    broken.pop("visual.ln_post.bias")
    with pytest.raises(ValueError, match="missing"):
        load_clip(broken)
    with pytest.raises(ValueError, match="CLIP ViT"):
        load_clip({"conv.weight": torch.zeros(1)})


def test_official_image_path_equals_upsample_then_pool():
    for size in (64, 256):
        images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(size)) * 2 - 1
        reference = torch.nn.AvgPool2d(size // 32)(torch.nn.Upsample(scale_factor=7)(images))
        ours = clip_input(images, compat="official")
        assert ours.shape == (2, 3, 224, 224)
        assert torch.allclose(ours, reference, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of 32"):
        clip_input(torch.zeros(1, 3, 100, 100), compat="official")
    with pytest.raises(ValueError, match="paper"):
        clip_input(torch.zeros(1, 3, 64, 64), compat="code")


def test_paper_image_path_normalises_and_keeps_gradients():
    images = torch.zeros(1, 3, 256, 256, requires_grad=True)  # mid grey
    x = clip_input(images)
    mean, std = torch.tensor([0.48145466, 0.4578275, 0.40821073]), torch.tensor([0.26862954, 0.26130258, 0.27577711])
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, :, 100, 100], (0.5 - mean) / std, atol=1e-6)
    x.sum().backward()
    assert images.grad.abs().sum() > 0


def _write_merges(path, merges):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")


def test_tokenizer_on_handmade_merges(tmp_path):
    _write_merges(tmp_path / "bpe.txt.gz", ["h e", "l l", "he ll", "hell o</w>"])
    tok = Tokenizer(tmp_path / "bpe.txt.gz", context_length=8)
    assert len(tok) == 256 + 256 + 4 + 2
    sot, eot, hello, bang = 516, 517, 512 + 3, 256  # '!' is the first printable byte
    ids = tok("  Hello\n hello!")
    assert ids.tolist() == [[sot, hello, hello, bang, eot, 0, 0, 0]]
    assert tok("he")[0, 1:4].tolist() == [ord("h") - ord("!"), 256 + ord("e") - ord("!"), eot]
    with pytest.raises(ValueError, match="truncate=True"):
        tok("hello " * 10)
    assert tok("hello " * 10, truncate=True)[0].tolist() == [sot] + [hello] * 6 + [eot]
    (tmp_path / "page.gz").write_bytes(b"\x1f\x8b not gzip")
    with pytest.raises(ValueError, match="clip-bpe-vocab"):
        Tokenizer(tmp_path / "page.gz")


def _real_vocab() -> Path:
    candidates = [os.environ.get("EMOSTYLE_CLIP_BPE", ""), "/tmp/ref_clipspace/bpe_simple_vocab_16e6.txt.gz"]
    try:
        from emostyle import registry

        candidates.insert(0, str(registry.path("clip-bpe-vocab")))
    except Exception:
        pass
    for c in candidates:
        if c and Path(c).is_file():
            return Path(c)
    pytest.skip("bpe_simple_vocab_16e6.txt.gz not available (emostyle weights fetch clip-bpe-vocab)")


def test_tokenizer_matches_known_ids_and_transformers(tmp_path):
    path = _real_vocab()
    tok = Tokenizer(path)
    # Ids printed in CLIP's and transformers' documentation for these prompts.
    assert tok(["a photo of a cat", "a photo of a dog"])[:, :7].tolist() == [
        [49406, 320, 1125, 539, 320, 2368, 49407], [49406, 320, 1125, 539, 320, 1929, 49407]]
    transformers = pytest.importorskip("transformers")
    lines = gzip.open(path, "rt", encoding="utf-8").read().split("\n")[1:48895]
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "vocab.json").write_text(json.dumps(tok.encoder), encoding="utf-8")
    reference = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    for text in ("Raining day, thunder!", "I can't stop   loving you 1999", "café — naïve"):
        expected = reference(text)["input_ids"]
        assert tok(text)[0, : len(expected)].tolist() == expected, text


# --- CLIP space (emostyle/spaces/clip_space.py) ----------------------------------------------

def test_clip_space_images_text_and_errors():
    import math
    import warnings

    from emostyle.spaces.clip_space import ClipSpace, tiny_clip_space

    space = tiny_clip_space(seed=0)
    images = (torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1).requires_grad_(True)
    emb = space.encode_image(images)
    assert emb.shape == (2, space.dim) and torch.allclose(emb.norm(dim=1), torch.ones(2), atol=1e-5)
    text = space.encode_text("a happy face")
    assert text.shape == (1, space.dim) and torch.allclose(text.norm(), torch.tensor(1.0), atol=1e-5)
    loss = space.distance(emb, text)
    assert loss.shape == (2,) and torch.allclose(loss, 1 - (emb @ text.T)[:, 0], atol=1e-6)
    loss.sum().backward()
    assert images.grad.abs().sum() > 0
    with pytest.warns(UserWarning, match="truncated"):
        space.encode_text("la " * 100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space.encode_text("short")

    official = ClipSpace(space.clip, space.tokenizer, space.audio_encoder, compat="official")
    img = official.encode_image(images.detach())
    assert not torch.allclose(img, emb)  # the two image paths differ
    # The reference: sim = (image_features @ audio_features.T)[0] * math.exp(0.07); loss = 1 - sim.
    assert torch.allclose(official.distance(img[:1], text), 1 - (img[:1] @ text.T)[0] * math.exp(0.07), atol=1e-6)
    assert torch.allclose(official.similarity(img, text), (img @ text.T) * math.exp(0.07), atol=1e-6)
    with pytest.raises(ValueError, match="target batch"):
        space.distance(emb, torch.cat([text] * 3))
    with pytest.raises(ValueError, match="'paper', 'official'"):
        ClipSpace(space.clip, space.tokenizer, space.audio_encoder, compat="code")
    with pytest.raises(ValueError, match="'start', 'center', 'random', 'mean'"):
        ClipSpace(space.clip, space.tokenizer, space.audio_encoder, crop="end")


def test_clip_space_audio_is_cached_by_content(sound_samples, tmp_path):
    import shutil

    import torch.nn.functional as F

    from emostyle.models.soundclip import audio_features
    from emostyle.spaces.clip_space import tiny_clip_space

    space = tiny_clip_space(seed=0)
    emb = space.encode_audio(sound_samples["fire"])
    with torch.no_grad():
        expected = F.normalize(space.audio_encoder(audio_features(sound_samples["fire"])), dim=-1)
    assert emb.shape == (1, space.dim) and torch.allclose(emb, expected, atol=1e-6)
    shutil.copy(sound_samples["fire"], tmp_path / "copy.wav")
    assert space.encode_audio(tmp_path / "copy.wav") is emb  # same content: from the cache
    assert not torch.allclose(space.encode_audio(sound_samples["wind"]), emb)
    with pytest.raises(FileNotFoundError):
        space.encode_audio(tmp_path / "absent.wav")
