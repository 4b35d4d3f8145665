"""Train ImageBART models: ``python main.py --base configs/<dataset>/<config>.yaml -t [--gpus 0,]``.

The command line of the original release on Lightning 2. The options live in
:mod:`imagebart.cli.train`, the training in :mod:`imagebart.train`; the names below are
re-exported so that ``main.*`` config targets and users' ``from main import ...`` keep working.
"""

import sys

from imagebart.callbacks import CUDACallback, ImageLogger, SetupCallback  # noqa: F401
from imagebart.cli.train import cli, get_parser, main  # noqa: F401
from imagebart.data.datamodule import DataModuleFromConfig, WrappedDataset  # noqa: F401
from imagebart.util import get_obj_from_str, instantiate_from_config  # noqa: F401

if __name__ == "__main__":
    sys.exit(cli())
