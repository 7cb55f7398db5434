"""Affective music (paper 3.2): lyrics, sentiment polarity, emotional music, rendering."""
