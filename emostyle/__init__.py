"""EmoStyle kit: emotion-aware semantic image manipulation with audio guidance.

The paper's pipeline has three stages (retrieval, affective music, guidance); profiles
swap the parts behind them (generator, embedding space, affective backends).
"""

__version__ = "0.1.0"
