"""mmseg_cvpt: prompt tuning of frozen Vision Transformers for OpenMMLab.

Importing the package registers every module in mmseg's (and mmpretrain's)
registries.
"""
from .version import __version__
from . import models  # noqa: F401  (registers the backbones)

__all__ = ['__version__']
