"""The e4e encoder: the official checkpoint layout, strict loading, and how W+ is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from emostyle.models.checkpoint import random_state
from emostyle.models.e4e import E4E, Encoder4Editing, _architecture, load_e4e

# Key names and shapes of Encoder4Editing(50, 'ir_se') at stylegan_size=1024, dumped once from
# omertov/encoder4editing's models/encoders/psp_encoders.py (built on the meta device).
LAYOUT = json.loads((Path(__file__).parent / "data" / "e4e_ffhq_encoder_layout.json").read_text())

# A narrow e4e: IR-SE trunk of four widths, 8 W+ layers (coarse 0-2, middle 3-6, fine 7).
UNITS = [(8, 8, 2), (8, 8, 1), (8, 16, 2), (16, 16, 1), (16, 24, 2), (24, 32, 2)]
SPATIALS = [16] * 3 + [32] * 4 + [64]  # the maps' sizes at 256 px input, as in e4e


def test_architecture_from_the_official_layout_matches_it_exactly():
    shapes = {k[len("encoder."):]: torch.Size(v) for k, v in LAYOUT.items()}
    with torch.device("meta"):
        fake = {k: torch.empty(s) for k, s in shapes.items()}
        config = _architecture(fake, "layout")
        model = Encoder4Editing(**config)
    assert len(config["units"]) == 24 and config["spatials"] == [16] * 3 + [32] * 4 + [64] * 11
    assert model.taps == (6, 20, 23)  # the reference's c1, c2, c3
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes


def _checkpoint(seed=0, latent_avg_layers=8):
    encoder = Encoder4Editing(UNITS, SPATIALS, reduction=4, style_dim=32)
    state = random_state(encoder, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    return {"state_dict": {**{f"encoder.{k}": v for k, v in state.items()},
                           "decoder.style.1.weight": torch.zeros(32, 32)},  # the generator rides along
            "latent_avg": torch.randn(latent_avg_layers, 32, generator=generator),
            "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 16, "start_from_latent_avg": True}}


def test_random_checkpoint_in_the_official_format_loads_strictly(tmp_path):
    path = tmp_path / "e4e_ffhq_encode.pt"
    checkpoint = _checkpoint()
    torch.save(checkpoint, path)
    e4e = load_e4e(path)
    assert isinstance(e4e, E4E) and not any(p.requires_grad for p in e4e.parameters())
    for key, value in checkpoint["state_dict"].items():
        if key.startswith("encoder."):
            assert torch.equal(e4e.encoder.state_dict()[key[len("encoder."):]], value), key
    faces = torch.rand(2, 3, 64, 64) * 2 - 1
    w = e4e(faces)
    assert w.shape == (2, 8, 32) and torch.isfinite(w).all()
    # Missing and extra keys are named, not a torch traceback.
    broken = _checkpoint()
    del broken["state_dict"]["encoder.latlayer1.bias"]
    with pytest.raises(ValueError, match="latlayer1.bias"):
        load_e4e(broken)
    with pytest.raises(ValueError, match="no `encoder"):
        load_e4e({"state_dict": {"decoder.x": torch.zeros(1)}})


def test_every_layer_is_one_w_plus_its_delta():
    """Layer 0 is w0 + latent_avg; a fine-level weight moves only the fine layers (7+)."""
    checkpoint = _checkpoint(seed=3, latent_avg_layers=1)
    e4e = load_e4e(checkpoint)
    faces = torch.rand(1, 3, 256, 256) * 2 - 1
    w = e4e(faces)
    encoder = e4e.encoder
    x = encoder.input_layer(faces)
    for i, unit in enumerate(encoder.body):
        x = unit(x)
    w0 = encoder.styles[0](x)
    torch.testing.assert_close(w[:, 0], w0 + checkpoint["latent_avg"], rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        encoder.styles[7].linear.bias += 1.0
        encoder.latlayer2.weight.mul_(2.0)
    moved = (e4e(faces) - w).abs().amax(dim=(0, 2))
    assert (moved[:7] == 0).all() and (moved[7:] > 0).all()
