"""Face alignment as FFHQ was made: an oriented square from the eyes and the mouth.

The FFHQ images (and so every StyleGAN2 FFHQ checkpoint and the e4e encoder) see faces
cropped by `recreate_aligned_images` of NVlabs/ffhq-dataset's `download_ffhq.py`, from the
68 dlib landmarks (iBUG 300-W order). This module follows its arithmetic step by step:

1. eye centres (means of points 36-41 and 42-47), mouth corners (points 48 and 54);
2. the crop's half-axis x is eye-to-eye minus the eye-to-mouth vector turned by 90 degrees,
   scaled to max(2 |eye-to-eye|, 1.8 |eye-to-mouth|); y is x turned by 90 degrees; the
   centre is the eyes' midpoint moved 0.1 of the way to the mouth;
3. shrink the photo by a whole factor when the square is over twice the output size;
4. crop to the square plus a border of 10 % (at least 3 px);
5. where the square leaves the photo: reflect-pad, blur the padding (sigma 2 % of the
   square) and fade it toward the median colour;
6. sample the square into `transform_size` px (bilinear), then Lanczos down to `output_size`.

`ffhq_quad` gives the square, `align_face` the aligned image from given landmarks, and
`align_photo` finds the landmarks with the kit's face detector (`emostyle.judges.face`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["ffhq_quad", "align_face", "align_photo", "NoFaceError"]


class NoFaceError(ValueError):
    """No face was found in a photo given to a face profile."""


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The oriented crop square of FFHQ: corners (4, 2) in (x, y) px, and its side in px.

    landmarks: (68, 2) dlib points (x, y) in px, iBUG 300-W order.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2) or not np.isfinite(lm).all():
        raise ValueError(f"landmarks must be 68 finite (x, y) points, shape (68, 2); got {lm.shape}")
    eye_left, eye_right = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_mid = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_mid = (lm[48] + lm[54]) / 2
    eye_to_mouth = mouth_mid - eye_mid
    # The horizontal axis leans with the eye line and with the face's vertical axis turned
    # by 90 degrees, so a tilted head is levelled by both.
    x = eye_to_eye - np.array([-eye_to_mouth[1], eye_to_mouth[0]])
    x = x / np.hypot(*x) * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.array([-x[1], x[0]])
    centre = eye_mid + 0.1 * eye_to_mouth
    quad = np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])
    return quad, float(np.hypot(*x) * 2)


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def align_face(image: np.ndarray, landmarks: np.ndarray, output_size: int = 1024,
               transform_size: int | None = None, padding: bool = True, zoom: float = 1.0) -> np.ndarray:
    """The FFHQ-aligned face (output_size, output_size, 3) uint8 of an 8-bit RGB photo (H, W, 3).

    transform_size: the intermediate square (FFHQ: 4096 for 1024; default 4 x output_size).
    padding: blur-pad where the square leaves the photo (FFHQ's default).
    zoom: > 1 takes a square that many times smaller about the same centre, for generators
    trained on tighter face crops than FFHQ's (1: FFHQ exactly).
    """
    import scipy.ndimage
    from PIL import Image

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be 8-bit RGB (H, W, 3); got {image.dtype} {image.shape}")
    if zoom <= 0:
        raise ValueError(f"zoom must be > 0, got {zoom}")
    transform_size = transform_size or 4 * output_size
    quad, qsize = ffhq_quad(landmarks)
    if zoom != 1:
        centre = quad.mean(0)
        quad, qsize = centre + (quad - centre) / zoom, qsize / zoom
    img = Image.fromarray(image)

    shrink = int(np.floor(qsize / output_size * 0.5))
    if shrink > 1:
        size = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(size, Image.Resampling.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    left, top, right, bottom = _bounds(quad)
    crop = (max(left - border, 0), max(top - border, 0), min(right + border, img.width),
            min(bottom + border, img.height))
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad = quad - crop[:2]

    left, top, right, bottom = _bounds(quad)
    pad = (max(-left + border, 0), max(-top + border, 0), max(right - img.width + border, 0),
           max(bottom - img.height + border, 0))
    if padding and max(pad) > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
        arr = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        # 0 inside the photo, rising to 1 at the outer edge of the padding.
        mask = np.maximum(1.0 - np.minimum(np.float32(xx) / pad[0], np.float32(w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(np.float32(yy) / pad[1], np.float32(h - 1 - yy) / pad[3]))
        sigma = qsize * 0.02
        arr += (scipy.ndimage.gaussian_filter(arr, [sigma, sigma, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)), "RGB")
        quad = quad + pad[:2]

    # Pillow's QUAD maps the output square onto the quad's corners (pixel centres at +0.5).
    img = img.transform((transform_size, transform_size), Image.Transform.QUAD, (quad + 0.5).flatten(),
                        Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return np.asarray(img, dtype=np.uint8)


def align_photo(image: np.ndarray, output_size: int, where: str = "the photo", zoom: float = 1.0) -> np.ndarray:
    """FFHQ alignment of the face that the kit's landmark detector finds in `image` (H, W, 3) uint8.

    A photo without a detectable face is a `NoFaceError` (a ValueError) naming `where`.
    """
    try:
        from emostyle.judges.face import face_landmarks

        landmarks = face_landmarks(image)
    except ImportError as error:  # dlib is optional; it loads on the first detection
        raise ValueError(f"aligning a face needs the dlib landmark detector: {error}; or give an already "
                         f"aligned, square face photo with --set inversion.align=centre") from None
    if landmarks is None:
        raise NoFaceError(f"no face found in {where}; use a photo with one clear, roughly frontal, "
                          f"well-lit face, or skip the alignment with --set inversion.align=centre (a centre crop); "
                          f"a landscape is a scene: --dataset scenes")
    return align_face(image, landmarks, output_size=output_size, zoom=zoom)
