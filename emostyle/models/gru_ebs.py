"""GRU-EBS lyrics-to-melody generator (paper Eq. 3; Bao & Sun, "Generating Music with Emotions").

A lyrics encoder (GRU over word + syllable skip-gram vectors) predicts the next syllable; an
attention GRU decoder over music tokens `p_{pitch}^d_{duration}^r_{rest}` predicts the next note.
The state-dict layout is the one of the official `GRU_generator_seqlen_50_embed_128_epoch_*.pkl`
checkpoints (BaoChunhui/Generate-Emotional-Music, `Seq2Seq(Encoder, Decoder)`):
`encoder.gru.*`, `encoder.fc.*`, `decoder.embedding.weight`, `decoder.attention.{v,attn.*}`,
`decoder.gru.*`, `decoder.fc.*`. Every size is read from the checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from emostyle.models import checkpoint
from emostyle.models.checkpoint import build_from_shapes

__all__ = ["GruEbsGenerator", "load_generator"]


class Attention(nn.Module):
    """Additive attention: weights over the encoder states for one decoder state."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.attn = nn.Linear(2 * hidden_size, hidden_size)
        self.v = nn.Parameter(torch.empty(hidden_size).uniform_(-hidden_size**-0.5, hidden_size**-0.5))

    def forward(self, hidden: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """hidden (B, H), states (T, B, H) -> weights (B, T), summing to 1 over T."""
        h = hidden.unsqueeze(0).expand_as(states)
        energy = torch.relu(self.attn(torch.cat([h, states], dim=2)))  # (T, B, H)
        return torch.softmax((energy @ self.v).transpose(0, 1), dim=1)


class LyricsEncoder(nn.Module):
    """GRU over the lyric vectors; its states feed the decoder, its head scores the next syllable."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, n_syllables: int):
        super().__init__()
        self.gru = nn.GRU(input_size, hidden_size, num_layers)
        self.fc = nn.Linear(hidden_size, n_syllables)

    def forward(self, lyrics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """lyrics (T, B, E) -> states (T, B, H), final hidden (L, B, H); the initial state is zero."""
        return self.gru(lyrics)


class MelodyDecoder(nn.Module):
    """Attention GRU over music tokens: input = token embedding + attended encoder state."""

    def __init__(self, n_notes: int, embedding_dim: int, hidden_size: int, num_layers: int):
        super().__init__()
        self.embedding = nn.Embedding(n_notes, embedding_dim)
        self.attention = Attention(hidden_size)
        self.gru = nn.GRU(embedding_dim + hidden_size, hidden_size, num_layers)
        self.fc = nn.Linear(2 * hidden_size, n_notes)

    def step(self, note: torch.Tensor, hidden: torch.Tensor, states: torch.Tensor):
        """One teacher-forced step: note (B,), hidden (L, B, H), states (T, B, H)
        -> features (B, 2H) for `fc`, new hidden (L, B, H)."""
        weights = self.attention(hidden[-1], states)  # (B, T)
        context = torch.einsum("bt,tbh->bh", weights, states)
        rnn_input = torch.cat([self.embedding(note), context], dim=1).unsqueeze(0)
        output, hidden = self.gru(rnn_input, hidden)
        return torch.cat([output[0], context], dim=1), hidden


class GruEbsGenerator(nn.Module):
    """Seq2seq lyrics-to-melody model: position t holds syllable t and note t, and predicts t + 1."""

    def __init__(self, input_size: int = 256, hidden_size: int = 256, num_layers: int = 4,
                 n_syllables: int = 20934, n_notes: int = 5954, note_embedding_dim: int = 100):
        super().__init__()
        self.encoder = LyricsEncoder(input_size, hidden_size, num_layers, n_syllables)
        self.decoder = MelodyDecoder(n_notes, note_embedding_dim, hidden_size, num_layers)

    @property
    def input_size(self) -> int:
        return self.encoder.gru.input_size

    def forward(self, lyrics: torch.Tensor, notes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """lyrics (T, B, E) float, notes (T, B) long -> syllable logits (T, B, n_syllables),
        note logits (T, B, n_notes); both score the token at t + 1."""
        features, states = self._decode(lyrics, notes)
        return self.encoder.fc(states), self.decoder.fc(torch.stack(features))

    def next_logits(self, lyrics: torch.Tensor, notes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the next syllable (B, n_syllables) and the next note (B, n_notes) only."""
        features, states = self._decode(lyrics, notes)
        return self.encoder.fc(states[-1]), self.decoder.fc(features[-1])

    def _decode(self, lyrics, notes):
        if lyrics.dim() != 3 or notes.shape != lyrics.shape[:2]:
            raise ValueError(f"expected lyrics (T, B, E) and notes (T, B); got {tuple(lyrics.shape)}, "
                             f"{tuple(notes.shape)}")
        # The decoder starts from the encoder's final state and attends over all its states.
        states, hidden = self.encoder(lyrics)
        features = []
        for note in notes:
            feature, hidden = self.decoder.step(note, hidden, states)
            features.append(feature)
        return features, states

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> "GruEbsGenerator":
        """Build the architecture the tensors describe and load them strictly."""
        def sizes(state):
            w_ih = state["encoder.gru.weight_ih_l0"]
            return dict(
                input_size=w_ih.shape[1],
                hidden_size=w_ih.shape[0] // 3,
                num_layers=len([k for k in state if re.fullmatch(r"encoder\.gru\.weight_ih_l\d+", k)]),
                n_syllables=state["encoder.fc.weight"].shape[0],
                n_notes=state["decoder.embedding.weight"].shape[0],
                note_embedding_dim=state["decoder.embedding.weight"].shape[1],
            )

        return build_from_shapes(cls, state_dict, sizes, "GRU-EBS generator",
                                 "GRU_generator_seqlen_50_embed_128_epoch_*.pkl (encoder.gru.*, decoder.*)")


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> GruEbsGenerator:
    """The generator of an official `GRU_generator_*.pkl` (a torch-saved state dict), in eval mode."""
    return GruEbsGenerator.from_state_dict(read_state_dict(path, "gru-ebs-generator", map_location)).eval()


def read_state_dict(path: str | Path, name: str, map_location="cpu") -> dict:
    """A plain tensor state dict from a torch checkpoint, loaded with `weights_only=True`;
    clear errors for a missing, truncated or non-checkpoint file (`name` is its registry entry)."""
    return checkpoint.read_state_dict(path, f"the {name} checkpoint", name, map_location=map_location)

