"""Embedding spaces: CLIP space (with SoundCLIP audio), ImageBind space, the offline affect space."""
