"""Write a checkpoint (ours or the original release's) in our native format.

    # an official scale, EMA weights only, without its copy of the VQGAN (for sampling)
    python scripts/convert_checkpoint.py models/ffhq_4_scales_geometric/scale2.ckpt out/scale2.ckpt \
        --ema_only --drop_first_stage
    # the VQGAN weights alone, from a VQGAN training run or from any denoiser checkpoint
    python scripts/convert_checkpoint.py logs/<run>/checkpoints/last.ckpt models/demo/vqgan.ckpt --first_stage_only

Options: ``python scripts/convert_checkpoint.py --help`` (``imagebart.cli.convert``).
"""

import sys

from imagebart.cli.convert import main

if __name__ == "__main__":
    sys.exit(main())
