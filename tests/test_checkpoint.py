"""emostyle.models.checkpoint: a file that holds more than tensors is refused without torch's
advice to load it unsafely."""

import argparse

import pytest
import torch

from emostyle.models.checkpoint import read_state_dict


def test_python_objects_in_a_checkpoint_are_refused_without_unsafe_advice(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save({"args": argparse.Namespace(lr=0.1), "fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(ValueError) as info:
        read_state_dict(path, "the SoundCLIP audio encoder", "soundclip-resnet18")
    message = str(info.value)
    assert "argparse.Namespace" in message and "`emostyle weights fetch soundclip-resnet18`" in message
    assert "weights_only" not in message and "\n" not in message

    torch.save({"fc.weight": torch.ones(2, 2)}, path)  # tensors only: read
    assert torch.equal(read_state_dict(path, "x", "soundclip-resnet18")["fc.weight"], torch.ones(2, 2))
