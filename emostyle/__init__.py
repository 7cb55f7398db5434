"""EmoStyle kit: emotion-aware semantic image manipulation with audio guidance.

The paper's pipeline has three stages (retrieval, affective music, guidance); profiles
swap the parts behind them (generator, embedding space, affective backends).
"""

import os

__version__ = "0.1.0"

# torch's OpenMP threads busy-wait for a core: on a machine shared with other jobs they spin
# against them and a guidance step gets 20x slower; passive threads sleep instead. OpenMP reads
# this when torch is imported, so it is set here, before the package imports torch (the CLI,
# scripts); kernels get it from their kernelspec. A value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
