"""fourm modality plugin ``tok_rgb``: RGB as discrete tokens from a ViT VQ-VAE with a diffusion decoder."""

__version__ = "0.1.0"
