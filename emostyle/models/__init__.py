"""The networks of the pipeline, one per file, in plain PyTorch."""
