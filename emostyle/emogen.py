"""EmoGen as a method (Yang et al. 2024): an image generated from the song's emotion category.

Not a weighting of EmoStyle's guidance loss but its own generation path, as in EmoGen's
`training/inference.py`: an emotion vector e ~ N(mean_c, std_c) of the category c (the emotion
space), the mapping network's token embedding m(e), Stable Diffusion 1.5 conditioned on the
text-encoder states of the one-token prompt "<c>" whose token embedding is m(e) (the release
adds a placeholder token and overwrites its embedding row; the kit replaces the embedding at
that position, the same numbers without changing the encoder), classifier-free guidance against
the empty prompt (scale 7.5), the UniPC scheduler, 50 steps, 512 px. Generation runs through
diffusers' `StableDiffusionPipeline` with `prompt_embeds`; randomness comes from one seeded
`torch.Generator` (the release seeds neither the emotion vector nor the noise).

Weights: Stable Diffusion 1.5 (registry `stable-diffusion-v1-5`, or any diffusers folder of it),
EmoGen's emotion space (`emogen-space-*`, or a folder of its `emo_space` files) and a trained mapper (`emogen-mapper`, unpublished: EmoGen #10). The tiny
profile builds every part small and random. Needs the `emogen` extra (diffusers).
"""

from __future__ import annotations

import json
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .config import Config, load_config
from .models.emogen import EMOTIONS, EmotionSpace, MappingNetwork

__all__ = ["EmoGen", "EmoGenResult", "load_emogen", "tiny_emogen", "generate", "manipulate", "column_image",
           "UNAVAILABLE"]

UNAVAILABLE = "EmoGen unavailable here: no diffusion weights"


@dataclass
class EmoGenResult:
    """Images (n, 3, H, W) in [-1, 1] for `category`, the emotion vectors (n, dim) they came from."""

    images: torch.Tensor
    category: str
    emotion: torch.Tensor
    settings: dict
    seconds: float


def _diffusers():
    try:
        import diffusers
    except ImportError:
        raise ImportError("EmoGen needs diffusers: pip install 'emostyle[emogen]'") from None
    return diffusers


class EmoGen:
    """The emotion space, the mapping network and a Stable Diffusion pipeline, held by name."""

    def __init__(self, space: EmotionSpace, mapper: MappingNetwork, pipe, bos: int, eos: int, pad: int,
                 name: str = "EmoGen"):
        width = pipe.text_encoder.config.hidden_size
        if mapper.dim_in != space.dim or mapper.dim_out != width:
            raise ValueError(f"the mapping network maps {mapper.dim_in} -> {mapper.dim_out}, but the emotion space "
                             f"is {space.dim}-d and the text encoder's tokens {width}-d")
        self.space, self.mapper, self.pipe = space, mapper, pipe
        self.bos, self.eos, self.pad, self.name = bos, eos, pad, name
        self.pipe.set_progress_bar_config(disable=True)

    @property
    def device(self) -> torch.device:
        return self.pipe.unet.device

    def to(self, device: str | torch.device) -> "EmoGen":
        self.pipe.to(device)
        self.mapper.to(device)
        return self

    def _ids(self, n: int) -> torch.Tensor:
        """Token ids (n, context) of the one-token prompt: start, placeholder, end, padding."""
        context = self.pipe.text_encoder.config.max_position_embeddings
        ids = torch.full((n, context), self.pad, dtype=torch.long)
        ids[:, 0], ids[:, 1], ids[:, 2] = self.bos, self.eos, self.eos  # position 1 is overwritten
        return ids

    @torch.no_grad()
    def prompt_embeds(self, tokens: torch.Tensor | None, n: int = 1) -> torch.Tensor:
        """Text-encoder states (n, context, width) of "<c>" with token embedding `tokens` (n, width)
        at the placeholder's position; None: the empty prompt (start, end, padding)."""
        encoder = self.pipe.text_encoder
        if tokens is None:
            ids = self._ids(n)
            ids[:, 1] = self.eos
            return encoder(ids.to(self.device))[0]

        def put(module, inputs, output):  # token embeddings (n, context, width) before positions
            output = output.clone()
            output[:, 1] = tokens.to(output.dtype)
            return output

        hook = encoder.get_input_embeddings().register_forward_hook(put)
        try:
            return encoder(self._ids(len(tokens)).to(self.device))[0]
        finally:
            hook.remove()

    @torch.no_grad()
    def __call__(self, category: str, n: int = 1, seed: int = 0, steps: int = 50, guidance_scale: float = 7.5,
                 size: int = 512) -> EmoGenResult:
        """n images of `category` (one of EMOTIONS), drawn only from `seed`."""
        if category not in EMOTIONS:
            raise ValueError(f"unknown emotion category {category!r}; EmoGen's categories: {', '.join(EMOTIONS)}")
        begun = time.perf_counter()
        generator = torch.Generator().manual_seed(seed)
        emotion = self.space.sample(category, n, generator)
        tokens = self.mapper(emotion.to(next(self.mapper.parameters()).device))
        out = self.pipe(prompt_embeds=self.prompt_embeds(tokens), negative_prompt_embeds=self.prompt_embeds(None, n),
                        num_inference_steps=steps, guidance_scale=guidance_scale, height=size, width=size,
                        generator=generator, output_type="pt")
        images = out.images.float().cpu() * 2 - 1
        settings = {"category": category, "seed": seed, "steps": steps, "guidance_scale": guidance_scale,
                    "size": size, "scheduler": type(self.pipe.scheduler).__name__, "model": self.name}
        return EmoGenResult(images, category, emotion, settings, time.perf_counter() - begun)


def load_emogen(config: Config, device: str | None = None) -> EmoGen:
    """EmoGen from the registry (or paths) that `config.emogen` names; the tiny one when the
    profile has random weights. Missing files raise the registry's error naming the fetch."""
    device = device or config.resolve_device()
    if config.random_weights:
        return tiny_emogen(config.seed).to(device)
    diffusers = _diffusers()
    from transformers import CLIPTextModel, CLIPTokenizer

    from .models.emogen import load_emotion_space, load_mapping_network
    from .pipeline import resolve_weights

    e = config.emogen
    folder = resolve_weights(e.weights)  # first: the diffusion weights are the largest missing piece
    mapper = load_mapping_network(resolve_weights(e.mapper), relu=e.mapper_relu)
    space = load_emotion_space(e.space or None)
    tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
    pipe = diffusers.StableDiffusionPipeline(
        vae=diffusers.AutoencoderKL.from_pretrained(folder, subfolder="vae"),
        text_encoder=CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"),
        tokenizer=tokenizer, unet=diffusers.UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
        scheduler=diffusers.UniPCMultistepScheduler.from_pretrained(folder, subfolder="scheduler"),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    model = EmoGen(space, mapper, pipe, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id,
                   name=f"EmoGen (SD 1.5 {Path(folder).name}, mapper {Path(resolve_weights(e.mapper)).name})")
    return model.to(device)


def tiny_emogen(seed: int = 0) -> EmoGen:
    """EmoGen at a tiny size with random weights (16-d emotion space, 32-d text tokens, 32 px
    images through a 2-level VAE and UNet): for tests and the tiny profile, seconds on a CPU."""
    diffusers = _diffusers()
    from transformers import CLIPTextConfig, CLIPTextModel

    from .models.emogen import tiny_emotion_space, tiny_mapping_network

    vocab = 64  # the last two ids are the start and end tokens, as in CLIP's vocabulary
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = diffusers.UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=32, norm_num_groups=8, attention_head_dim=8)
        vae = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32), norm_num_groups=8,
            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2, sample_size=32)
        text = CLIPTextModel(CLIPTextConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                            num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                                            bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1))
    # Stable Diffusion 1.5's noise schedule, read by UniPC as EmoGen does.
    scheduler = diffusers.UniPCMultistepScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                                  steps_offset=1)
    pipe = diffusers.StableDiffusionPipeline(vae=vae.eval(), text_encoder=text.eval(), tokenizer=None, unet=unet.eval(),
                                             scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                             requires_safety_checker=False)
    return EmoGen(tiny_emotion_space(16, seed), tiny_mapping_network(16, 32, 64, seed), pipe, vocab - 2, vocab - 1,
                  vocab - 1, name=f"tiny random EmoGen (seed {seed})")


_MODELS: dict[str, EmoGen] = {}


def _model(config: Config) -> EmoGen:
    key = json.dumps({"e": config.emogen.__dict__, "random": config.random_weights, "seed": config.seed,
                      "device": config.resolve_device()}, sort_keys=True, default=str)
    if key not in _MODELS:
        _MODELS[key] = load_emogen(config)
    return _MODELS[key]


def generate(category: str, config: Config | str, n: int = 1, seed: int | None = None) -> EmoGenResult:
    """n EmoGen images of `category` with the settings of `config.emogen` (steps, guidance
    scale, size); the model is built once per process and configuration."""
    config = load_config(config) if isinstance(config, str) else config
    e = config.emogen
    return _model(config)(category, n=n, seed=config.seed if seed is None else seed, steps=e.steps,
                          guidance_scale=e.guidance_scale, size=e.size)


def column_image(category: str, config: Config | str, seed: int | None = None) -> tuple[np.ndarray, str]:
    """Figure 2's EmoGen column for one song: an 8-bit image (H, W, 3) and its caption. Where the
    weights are missing (offline: no diffusion weights install from PyPI), a grey panel that says
    so on its face, and a caption naming the missing file."""
    from .parts import to_uint8
    from .registry import MissingWeightError

    config = load_config(config) if isinstance(config, str) else config
    try:
        result = generate(category, config, seed=seed)
    except (MissingWeightError, ImportError) as error:
        entry = re.search(r"registry entry '([^']+)'", str(error))
        why = f"missing {entry.group(1)}: `emostyle weights fetch {entry.group(1)}`" if entry else str(error)
        return _placeholder(256, category), f"{UNAVAILABLE} ({why})"
    return to_uint8(result.images)[0], f"EmoGen: {category}"


def _placeholder(size: int, category: str) -> np.ndarray:
    """A grey panel that says, in letters large enough to read in a figure's grid, that EmoGen
    did not run and which category it would have drawn."""
    from PIL import Image, ImageDraw, ImageFont

    panel = Image.new("RGB", (size, size), (200, 200, 200))
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default(size=size // 8)  # sized fonts: Pillow >= 10.1
    for i, line in enumerate(("EmoGen", "not run", category)):
        draw.text((size // 2, size // 4 + i * size // 4), line, fill=(40, 40, 40), font=font, anchor="mm")
    return np.asarray(panel)


def manipulate(song: str | Path, config: Config, out: str | Path, lyrics: str | None = None,
               label: str | None = None) -> dict:
    """`emostyle manipulate --method emogen`: the song's affective stage (its emotion category),
    then one EmoGen image of the most probable category; writes after.png, the music and
    manifest.json into `out`, and returns the manifest."""
    from .affective import affective_music
    from .figures import save_image
    from .manifest import run_manifest, write_json

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    begun = time.perf_counter()
    music = affective_music(song, config, out_dir=out / "music", lyrics=lyrics, label=label)
    seconds = {"affective_music": time.perf_counter() - begun}
    category = music.categories.top
    if music.categories.fallback:
        warnings.warn(f"no emotion found in the lyrics ({music.categories.backend}): EmoGen draws {category}, the "
                      "first category of the tie; give --lyrics that name an emotion")
    result = generate(category, config)
    seconds["emogen"] = result.seconds
    save_image(result.images[0], out / "after.png")
    manifest = run_manifest(
        config, timings={k: round(v, 3) for k, v in seconds.items()}, method="emogen", song=str(song),
        parts={"profile": config.profile, "generator": _model(config).name},
        lyrics={"text": music.transcript.text, "source": music.transcript.source, "backend": music.transcript.backend},
        polarity=music.polarity.to_json(),
        categories=music.categories.to_json(),
        music={"midi": str(music.midi_path), "wav": str(music.wav_path), "renderer": music.renderer},
        emogen={**result.settings, "emotion_vector_norm": float(result.emotion.norm())},
    )
    write_json(out / "manifest.json", manifest)
    return manifest
