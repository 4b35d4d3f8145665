"""Install with ``bash install.sh`` (it installs torch and taming-transformers first; see README)."""

from setuptools import find_packages, setup

setup(
    name="imagebart",
    version="0.1.0",
    description="ImageBART: coarse-to-fine image synthesis by inverting a multinomial diffusion over VQGAN tokens",
    packages=find_packages(include=["imagebart", "imagebart.*"]),
    package_data={"imagebart": ["diffusion/curves/*.json"]},
    python_requires=">=3.10",
    # torch is installed first by install.sh (a CPU build where there is no GPU), and
    # taming-transformers-rom1504==0.0.6 without its dependencies: they pull torchvision,
    # which breaks `import pytorch_lightning` where it cannot load. Never add torchvision here.
    install_requires=[
        "torch>=2.1",
        "pytorch-lightning>=2.4,<3",
        "omegaconf>=2.3",
        "einops>=0.7",
        "x-transformers>=2.3.27,<2.32",
        "numpy",
        "pillow",
        "pyyaml",
        "streamlit>=1.53",
        "streamlit-drawable-canvas>=0.12",  # the inpainting app's mask brush
        "matplotlib",  # scripts/plot_metrics.py
        "tokenizers>=0.19",
        "tqdm",
    ],
    extras_require={
        "test": ["pytest>=8"],
        "tensorboard": ["tensorboard"],
    },
)
