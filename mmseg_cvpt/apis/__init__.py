"""Task packages (export, full checkpoints) and several tasks on one frozen
backbone. Not imported by ``import mmseg_cvpt``: ``from mmseg_cvpt.apis
import MultiTaskModel, export_task``."""
from .merged_export import export_merged
from .multi_task import MultiTaskModel
from .task_package import (PACKAGE_FORMAT, PACKAGE_VERSION, build_model,
                           export_task, model_meta, record_base)

__all__ = [
    'MultiTaskModel', 'export_task', 'export_merged',
    'record_base', 'build_model',
    'model_meta', 'PACKAGE_FORMAT', 'PACKAGE_VERSION'
]
