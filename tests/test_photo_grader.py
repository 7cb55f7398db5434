"""The photo grader: the offline profile's scene generator over real photos from PyPI wheels."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from emostyle.guidance import guide
from emostyle.models.photo_grader import OPERATIONS, PHOTOS, PhotoGrader, load_photo_grader
from emostyle.spaces.affect import EMOTION_PAD, AffectSpace, scene_pad

SIZE = 64


@pytest.fixture(scope="module")
def files() -> dict[str, Path]:
    """The registry's photos (the offline profile's files)."""
    from emostyle import registry

    return {name: registry.path(name) for name, *_ in PHOTOS}


@pytest.fixture(scope="module")
def grader(files):
    return load_photo_grader(SIZE, paths=files)


def synthetic_grader() -> PhotoGrader:
    """Two smooth colour ramps as 'photos': for the mechanics, independent of any file."""
    ramp = torch.linspace(-0.8, 0.8, 16)
    a = torch.stack([ramp.view(1, -1).expand(16, 16), ramp.view(-1, 1).expand(16, 16), torch.zeros(16, 16)])
    return PhotoGrader(torch.stack([a, -a.flip(0)]))


def latents_for(grader, index: list[int], strength: float = 0.0) -> torch.Tensor:
    """Latents (B, n_layers, 2): the given photo indices, the same strength on every operation."""
    z = torch.full((len(index), grader.n_layers, 2), strength)
    z[..., 1] = torch.tensor(index, dtype=torch.float32).view(-1, 1)
    return z


def test_interface():
    g = synthetic_grader()
    assert (g.name, g.n_layers, g.latent_dim, g.resolution) == ("photo-grader", len(OPERATIONS), 2, 16)
    assert [op for op, _ in OPERATIONS] == ["exposure", "temperature", "tint", "contrast", "saturation", "vignette"]


def test_latent_zero_is_the_photo(files, grader):
    """Strength 0 renders the photo itself, as read independently with PIL (centre crop, Lanczos)."""
    images = grader.render(latents_for(grader, list(range(len(files)))))
    assert images.shape == (len(files), 3, SIZE, SIZE)
    for image, path in zip(images, files.values()):
        with Image.open(path) as im:
            im = im.convert("RGB")
        side = min(im.size)
        box = ((im.width - side) // 2, (im.height - side) // 2)
        square = im.crop(box + (box[0] + side, box[1] + side)).resize((SIZE, SIZE), Image.Resampling.LANCZOS)
        expected = torch.from_numpy(np.asarray(square, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
        assert (image - expected).abs().max() < 1e-5


def test_each_operation_changes_the_image_its_way():
    g = synthetic_grader()
    photo = g.render(latents_for(g, [0]))
    for k, (op, _) in enumerate(OPERATIONS):
        z = latents_for(g, [0])
        z[:, k, 0] = 1.0
        graded = g.render(z)
        assert (graded - photo).abs().max() > 0.02, op
        assert graded.min() >= -1 and graded.max() <= 1
    exposure = latents_for(g, [0])
    exposure[:, 0, 0] = 1.0
    assert scene_pad(g.render(exposure))[0, 0] > scene_pad(photo)[0, 0]  # brighter: more pleasant


def test_gradients_reach_the_grades_not_the_selector():
    g = synthetic_grader()
    z = latents_for(g, [0, 1], strength=0.2).requires_grad_(True)
    scene_pad(g.render(z))[:, 0].sum().backward()
    assert (z.grad[..., 0].abs() > 0).all()
    assert torch.equal(z.grad[..., 1], torch.zeros_like(z.grad[..., 1]))


def test_selector_errors_are_clear():
    g = synthetic_grader()
    with pytest.raises(ValueError, match="out of range"):
        g.render(latents_for(g, [2]))
    z = latents_for(g, [0])
    z[0, 3, 1] = 1.0
    with pytest.raises(ValueError, match="same whole number"):
        g.render(z)
    with pytest.raises(ValueError, match=r"\(B, 6, 2\)"):
        g.render(torch.zeros(1, 6, 3))


def test_same_seed_same_sample():
    g = synthetic_grader()
    a = g.sample(5, torch.Generator().manual_seed(3))
    b = g.sample(5, torch.Generator().manual_seed(3))
    c = g.sample(5, torch.Generator().manual_seed(4))
    assert a.shape == (5, g.n_layers, 2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(g.render(a), g.render(b))
    assert set(a[..., 1].unique().tolist()) <= {0.0, 1.0}


def run_guide(grader, start, target):
    return guide(grader, AffectSpace(domain="scene"), start, {"text": torch.tensor([target])}, {"text": 1.0},
                 steps=30, lr=0.1, l_sim=0.01, progress=False)


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_guidance_moves_pleasure(grader, sign):
    """Toward pleasure +-0.8 (arousal, dominance 0), every photo's pleasure moves that way,
    through brightness and saturation; the photos themselves stay the same."""
    start = latents_for(grader, list(range(len(grader.photos))))
    result = run_guide(grader, start, (0.8 * sign, 0.0, 0.0))
    before, after = scene_pad(result.start_images), scene_pad(result.images)
    assert (sign * (after[:, 0] - before[:, 0]) > 0.1).all(), (before, after)
    assert torch.equal(result.latents[..., 1], start[..., 1])


def test_guidance_toward_happy_and_sad(grader):
    """Toward the PAD of "happy" the scenes get more pleasant on average, toward "sad" less.

    Not per photo: happy's dominance (0.46) asks for a darker image (D = -0.76 B + 0.32 S),
    so an already balanced photo may trade a little brightness for saturation.
    """
    start = latents_for(grader, list(range(len(grader.photos))))
    before = scene_pad(grader.render(start))[:, 0].mean()
    happy = scene_pad(run_guide(grader, start, EMOTION_PAD["happy"]).images)[:, 0].mean()
    sad = scene_pad(run_guide(grader, start, EMOTION_PAD["sad"]).images)[:, 0].mean()
    assert happy > before + 0.05 and sad < before - 0.1, (before, happy, sad)


def test_missing_and_bad_photo_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch photo-x"):
        load_photo_grader(16, paths={"photo-x": tmp_path / "absent.jpg"})
    page = tmp_path / "page.jpg"
    page.write_text("<html>not found</html>")
    with pytest.raises(ValueError, match="not a readable image"):
        load_photo_grader(16, paths={"photo-x": page})
