"""Reading a user's photo: one checked RGB array, whatever file the user gives.

`read_photo` accepts any still image Pillow reads and turns it into 8-bit RGB, with a
documented handling for each kind of file (recorded in `Photo.notes` for the manifest):

- EXIF orientation: applied (a phone photo taken upright is read upright);
- greyscale (L, 1, I;16, I, F): replicated to three channels, 16-bit and float scaled to 8 bit;
- palette (P): converted to RGB; transparency (RGBA, LA, PA): composited over white;
- CMYK, YCbCr, LAB: converted to RGB by Pillow (no colour management);
- animated images (GIF, WebP, APNG): the first frame;
- longer side above `MAX_SIDE` px: downscaled (Lanczos), since the generators work at
  1024 px at most; above `MAX_PIXELS` pixels the file is refused before it is decoded.

Refused with a one-line `ValueError`: not an image, unreadable or truncated, smaller
than `MIN_SIDE` px on its shorter side, more than `MAX_PIXELS` pixels.
A missing path is a `FileNotFoundError`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["Photo", "read_photo", "centre_square", "to_tensor", "MIN_SIDE", "MAX_SIDE", "MAX_PIXELS"]

MIN_SIDE = 64  # px; the DCGAN's resolution, and below it no face has landmarks to find
MAX_SIDE = 4096  # px; larger photos are downscaled on reading
MAX_PIXELS = 200_000_000  # refused unread: decoding would take gigabytes of memory


@dataclass
class Photo:
    """An 8-bit RGB photo (H, W, 3), where it came from, and how it was converted."""

    pixels: np.ndarray
    path: Path
    notes: tuple[str, ...] = ()

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in px."""
        return self.pixels.shape[1], self.pixels.shape[0]


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise ValueError(f"{path} is not an image Pillow can read (expected JPEG, PNG, WebP, TIFF, BMP, GIF)") from None
    except Image.DecompressionBombError:
        raise ValueError(f"{path} has too many pixels to decode safely; resize it below "
                         f"{MAX_PIXELS // 1_000_000} megapixels first") from None
    except OSError as error:
        raise ValueError(f"{path} cannot be read as an image ({error})") from None
    return image


def _to_rgb(image, notes: list[str]):
    """Any Pillow mode -> RGB, recording the conversion."""
    from PIL import Image

    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(np.round(array / top * 255), 0, 255).astype(np.uint8)
        notes.append(f"greyscale ({mode}) scaled to 8 bit and replicated to RGB")
        return Image.fromarray(np.repeat(grey[..., None], 3, axis=2))
    if mode in ("L", "1"):
        notes.append("greyscale replicated to RGB")
        return image.convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        notes.append("palette converted to RGB")
        if image.mode == "RGB":
            return image
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        notes.append(f"transparency ({mode}) composited over white")
        return Image.alpha_composite(white, rgba).convert("RGB")
    notes.append(f"{mode} converted to RGB (no colour management)")
    return image.convert("RGB")


def read_photo(path: str | Path) -> Photo:
    """The photo at `path` as 8-bit RGB, upright, at most `MAX_SIDE` px; see the module docstring."""
    from PIL import Image, ImageOps

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"photo not found: {path}")
    if not path.is_file():
        raise ValueError(f"{path} is a folder, not a photo; give an image file (JPEG, PNG, ...)")
    notes: list[str] = []
    image = _open(path)
    with image:
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(f"{path} is {image.width}x{image.height} px, more than "
                             f"{MAX_PIXELS // 1_000_000} megapixels; resize it first")
        if getattr(image, "n_frames", 1) > 1:
            notes.append(f"first of {image.n_frames} frames")
        try:
            image.load()
            upright = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, ValueError) as error:
            raise ValueError(f"{path} is truncated or corrupt ({error}); re-save or re-download it") from None
        if _rotated(image):
            notes.append("rotated upright from its EXIF orientation")
        image = _to_rgb(upright, notes)
    scale = min(1.0, MAX_SIDE / max(image.size))
    if min(image.size) * scale < MIN_SIDE:  # as it would be after the downscaling below (a long thin strip)
        raise ValueError(f"{path} is {image.width}x{image.height} px; a photo needs at least {MIN_SIDE} px "
                         f"on its shorter side" + (f" once its longer side is brought to {MAX_SIDE} px" if scale < 1 else ""))
    if scale < 1:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        notes.append(f"downscaled from {image.width}x{image.height} to {size[0]}x{size[1]} px")
        image = image.resize(size, Image.Resampling.LANCZOS)
    return Photo(np.asarray(image, dtype=np.uint8).copy(), path, tuple(notes))


def _rotated(image) -> bool:
    """Whether the image carries an EXIF orientation other than 'upright' (1)."""
    try:
        return image.getexif().get(0x0112, 1) not in (1, None)
    except Exception:  # a broken EXIF block is not worth refusing the photo for
        return False


def centre_square(pixels: np.ndarray, size: int) -> np.ndarray:
    """The central square of an 8-bit RGB array (H, W, 3), resized (Lanczos) to (size, size, 3)."""
    from PIL import Image

    image = Image.fromarray(pixels)
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    square = image.crop((left, top, left + side, top + side))
    return np.array(square.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def to_tensor(pixels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """8-bit RGB (H, W, 3) -> image (1, 3, H, W) in [-1, 1], as the generators draw."""
    x = torch.tensor(np.asarray(pixels), dtype=torch.float32, device=device)
    return (x / 127.5 - 1).permute(2, 0, 1).unsqueeze(0)
