"""The VTAB-1K / FGVC results table: per-task top-1, group means, benchmark
means and trainable parameter counts, per method.

Means are plain arithmetic means of the per-task top-1:

* a group mean (Natural, Specialized, Structured) averages its tasks;
* the VTAB mean averages the three group means, as VPT and CVPT report it
  (VPT-deep's 78.48 / 82.43 / 54.98 give the 72.0 that CVPT quotes); the
  19-task mean, which weighs Structured's 8 tasks more, is given too;
* the FGVC mean averages the 5 FGVC tasks.

A mean over a partial set of tasks is marked ``(k/n)`` in the Markdown.
"""
import csv
import json
import os.path as osp
from collections import OrderedDict
from statistics import mean
from typing import Dict, List, Optional, Sequence

from .tasks import FGVC_TASKS, TASKS, VTAB_GROUPS

RESULTS_FILE = 'results.json'
FIELDS = ('method', 'task', 'split', 'top1', 'trainable_params',
          'backbone_trainable_params')


def load_run(run_dir: str) -> dict:
    """One row from a run folder's ``results.json``: its test top-1 if the
    run was tested, else its last validation top-1."""
    path = osp.join(run_dir, RESULTS_FILE)
    if not osp.isfile(path):
        raise FileNotFoundError(f'no {RESULTS_FILE} in {run_dir} (written by '
                                'TaskResultsHook during training/testing)')
    with open(path) as f:
        results = json.load(f)
    splits = [key for key, value in results.items()
              if isinstance(value, dict) and 'top1' in value]
    if not splits:
        raise ValueError(f'{path} holds no evaluation result yet')
    split = 'test' if 'test' in splits else splits[0]
    return dict(
        method=results['method'],
        task=results['task'],
        split=split,
        top1=results[split]['top1'],
        trainable_params=results['params']['trainable'],
        backbone_trainable_params=results['params']['backbone_trainable'])


def _typed(row: dict) -> dict:
    """A row with numeric fields converted; unknown tasks are an error."""
    if row.get('task') not in TASKS:
        raise ValueError(f'unknown task {row.get("task")!r} in {row}; valid '
                         f'tasks: {", ".join(TASKS)}')
    out = dict(method=row['method'], task=row['task'],
               split=row.get('split') or '', top1=float(row['top1']))
    for key in FIELDS[4:]:
        out[key] = int(row[key]) if row.get(key) not in (None, '') else None
    return out


def load_rows(sources: Sequence[str]) -> List[dict]:
    """Rows from run folders, JSON files (a list of rows) or CSV files
    (columns ``method,task,top1`` and optionally ``split``,
    ``trainable_params``, ``backbone_trainable_params``)."""
    rows = []
    for source in sources:
        if osp.isdir(source):
            rows.append(load_run(source))
        elif source.endswith('.json'):
            with open(source) as f:
                rows.extend(json.load(f))
        elif source.endswith('.csv'):
            with open(source, newline='') as f:
                rows.extend(csv.DictReader(f))
        else:
            raise ValueError(f'{source}: expected a run folder, a .json or a '
                             '.csv file')
    rows = [_typed(row) for row in rows]
    seen = set()
    for row in rows:
        key = row['method'], row['task']
        if key in seen:
            raise ValueError(f'two results for method {key[0]} on task '
                             f'{key[1]}')
        seen.add(key)
    return rows


def _mean(values: Dict[str, float], names: Sequence[str]):
    """(mean over the names present, number present)."""
    present = [values[name] for name in names if name in values]
    return (mean(present) if present else None), len(present)


GROUP_LABELS = OrderedDict(
    natural='Natural mean', specialized='Specialized mean',
    structured='Structured mean')
VTAB_MEAN = 'VTAB mean (of group means)'
VTAB_TASK_MEAN = 'VTAB mean (of tasks)'
FGVC_MEAN = 'FGVC mean'
PARAMS = OrderedDict(
    backbone_trainable_params='trainable params, backbone (M)',
    trainable_params='trainable params, with head (M)')
SPLIT = 'evaluated on'
SUMMARY_ENTRIES = (*GROUP_LABELS.values(), VTAB_MEAN, VTAB_TASK_MEAN,
                   FGVC_MEAN, *PARAMS.values(), SPLIT)


def summarize(rows: Sequence[dict]) -> 'OrderedDict[str, dict]':
    """Per method: per-task top-1, group and benchmark means, params.

    Returns:
        OrderedDict: method -> {entry: (value, count, total)}, where a mean
        was taken over ``count`` of its ``total`` tasks (a task's own top-1:
        1 of 1). Entries are the task names and ``SUMMARY_ENTRIES``.
    """
    methods = OrderedDict()
    for row in rows:
        methods.setdefault(row['method'], []).append(row)
    table = OrderedDict()
    for method, method_rows in methods.items():
        top1 = {row['task']: row['top1'] for row in method_rows}
        entries = {task: (value, 1, 1) for task, value in top1.items()}
        group_means = []
        for group, names in VTAB_GROUPS.items():
            value, count = _mean(top1, names)
            entries[GROUP_LABELS[group]] = (value, count, len(names))
            if value is not None:
                group_means.append(value)
        vtab = [name for names in VTAB_GROUPS.values() for name in names]
        value, count = _mean(top1, vtab)
        entries[VTAB_MEAN] = (mean(group_means) if group_means else None,
                              count, len(vtab))
        entries[VTAB_TASK_MEAN] = (value, count, len(vtab))
        entries[FGVC_MEAN] = (*_mean(top1, FGVC_TASKS), len(FGVC_TASKS))
        for key, label in PARAMS.items():
            params = {row['task']: row[key] / 1e6 for row in method_rows
                      if row[key] is not None}
            entries[label] = (*_mean(params, list(params)), len(method_rows))
        splits = sorted({row['split'] for row in method_rows} - {''})
        entries[SPLIT] = ('/'.join(splits) or None, 1, 1)
        table[method] = entries
    return table


def _cell(name: str, entry: Optional[tuple], markdown: bool) -> str:
    if entry is None or entry[0] is None:
        return '-' if markdown else ''
    value, count, total = entry
    if isinstance(value, str):
        return value
    text = f'{value:.3f}' if name in PARAMS.values() else f'{value:.2f}'
    if markdown and count < total:
        text += f' ({count}/{total})'
    return text


def write_table(rows: Sequence[dict], out_prefix: str) -> List[str]:
    """Write ``out_prefix.md`` and ``out_prefix.csv``; return the paths."""
    table = summarize(rows)
    methods = list(table)
    names = [task for task in TASKS
             if any(task in entries for entries in table.values())]
    names += SUMMARY_ENTRIES
    md_lines = [
        '| | ' + ' | '.join(methods) + ' |',
        '|---|' + '---:|' * len(methods),
    ]
    for name in names:
        cells = [_cell(name, table[m].get(name), True) for m in methods]
        md_lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    md_lines += [
        '',
        'Top-1 (%). VTAB mean (of group means): the mean of the Natural, '
        'Specialized and Structured means, as VPT and CVPT report it. '
        '(k/n): a mean over k of its n tasks. Trainable params: the mean '
        'over the tasks.',
    ]
    paths = [out_prefix + '.md', out_prefix + '.csv']
    with open(paths[0], 'w') as f:
        f.write('\n'.join(md_lines) + '\n')
    with open(paths[1], 'w', newline='') as f:
        writer = csv.writer(f)
        writer.writerow(['entry'] + methods)
        for name in names:
            writer.writerow([name] + [
                _cell(name, table[m].get(name), False) for m in methods
            ])
    return paths
