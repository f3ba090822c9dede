"""mmseg_cvpt: prompt tuning of frozen Vision Transformers for OpenMMLab.

Importing the package registers every module in mmseg's (and mmpretrain's)
registries, makes ``mmseg_cvpt::`` config paths resolvable and prepares
runner checkpoints for torch's ``weights_only`` loader.
"""
from . import config_registration  # noqa: F401  (mmseg_cvpt:: in configs)
from . import datasets, engine, evaluation, models  # noqa: F401
from .version import __version__

__all__ = ['__version__']
