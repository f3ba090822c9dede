"""Classification data sets (registered in mmpretrain), the task table,
the check of segmentation label maps (in mmseg's ``LoadAnnotations``) and
the 19-class GTAV and Mapillary data sets of domain-generalised
segmentation and its several targets in one test (registered in mmseg)."""
from .dg import GTAVDataset, MapillaryCityscapesDataset, MultiTargetDataset
from .label_maps import LabelMapError, LoadAnnotations, check_label_file
from .tasks import TASKS, VTAB_GROUPS, FGVC_TASKS, Task, get_task, resolve_task
from .vtab_fgvc import FGVC, VTAB1k

__all__ = [
    'TASKS', 'VTAB_GROUPS', 'FGVC_TASKS', 'Task', 'get_task', 'resolve_task',
    'FGVC', 'VTAB1k', 'LabelMapError', 'LoadAnnotations', 'check_label_file',
    'GTAVDataset', 'MapillaryCityscapesDataset', 'MultiTargetDataset'
]
