"""Classification data sets (registered in mmpretrain) and the task table."""
from .tasks import TASKS, VTAB_GROUPS, FGVC_TASKS, Task, get_task, resolve_task
from .vtab_fgvc import FGVC, VTAB1k

__all__ = [
    'TASKS', 'VTAB_GROUPS', 'FGVC_TASKS', 'Task', 'get_task', 'resolve_task',
    'FGVC', 'VTAB1k'
]
