"""GRU-EBS emotion classifier: scores a (syllable, note) sequence as negative or positive.

A bidirectional LSTM over [syllable embedding, note embedding] pairs, read at the last position;
the layout of the official `LSTM_datasetlen_50_fold_7_clf.pkl` (BaoChunhui/Generate-Emotional-Music,
`LSTM_cls.LSTMClassifier`): `word_embeddings.weight` (syllables), `music_embeddings.weight`,
`lstm.*` (with `_reverse`), `fc.*`. Every size is read from the checkpoint.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from emostyle.models.checkpoint import build_from_shapes
from emostyle.models.gru_ebs import read_state_dict

__all__ = ["CLASSES", "EmotionClassifier", "load_classifier"]

CLASSES = ("negative", "positive")  # the order of the logits


class EmotionClassifier(nn.Module):
    """(syllables, notes) -> emotion logits over `CLASSES`."""

    def __init__(self, n_syllables: int = 20934, n_notes: int = 5954, syllable_dim: int = 128,
                 note_dim: int = 10, hidden_size: int = 256, num_layers: int = 6, n_classes: int = 2):
        super().__init__()
        self.word_embeddings = nn.Embedding(n_syllables, syllable_dim)
        self.music_embeddings = nn.Embedding(n_notes, note_dim)
        self.lstm = nn.LSTM(syllable_dim + note_dim, hidden_size, num_layers, batch_first=True,
                            bidirectional=True)
        self.fc = nn.Linear(2 * hidden_size, n_classes)

    def forward(self, syllables: torch.Tensor, notes: torch.Tensor) -> torch.Tensor:
        """syllables, notes (B, T) long indices -> logits (B, n_classes), read at position T - 1."""
        x = torch.cat([self.word_embeddings(syllables), self.music_embeddings(notes)], dim=2)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])

    @classmethod
    def from_state_dict(cls, state_dict: dict) -> "EmotionClassifier":
        """Build the architecture the tensors describe and load them strictly."""
        def sizes(state):
            syllables, notes = state["word_embeddings.weight"], state["music_embeddings.weight"]
            return dict(
                n_syllables=syllables.shape[0], syllable_dim=syllables.shape[1],
                n_notes=notes.shape[0], note_dim=notes.shape[1],
                hidden_size=state["lstm.weight_hh_l0"].shape[1],
                num_layers=len([k for k in state if re.fullmatch(r"lstm\.weight_ih_l\d+", k)]),
                n_classes=state["fc.weight"].shape[0],
            )

        return build_from_shapes(cls, state_dict, sizes, "GRU-EBS emotion classifier",
                                 "LSTM_datasetlen_50_fold_7_clf.pkl (word_embeddings, music_embeddings, lstm, fc)")


def load_classifier(path: str | Path, map_location: str | torch.device = "cpu") -> EmotionClassifier:
    """The classifier of an official `LSTM_datasetlen_*_clf.pkl` (a torch-saved state dict), in eval mode."""
    return EmotionClassifier.from_state_dict(read_state_dict(path, "gru-ebs-classifier", map_location)).eval()
