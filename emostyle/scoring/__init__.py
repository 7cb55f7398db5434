"""Evaluation (paper 4.4): aesthetic and quality scores, alignment metrics, tables."""
