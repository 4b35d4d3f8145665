"""ImageBART: coarse-to-fine image synthesis by inverting a multinomial diffusion over VQGAN tokens."""

__version__ = "0.1.0"
