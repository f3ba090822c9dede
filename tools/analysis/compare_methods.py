"""Train every method under the same schedule and seed, and compare them.

The methods are those of the package's registry (``mmseg_cvpt.methods``),
their configs the namesakes of ``--config`` in the method folders (each
method's folder and name prefix): for
``configs/cvpt/upernet_vittiny_ade20k_demo.py`` (the default, the embedded
demo) they are ``configs/{baseline,vpt,cvpt,bpt,davpt,lora,adaptformer,
rein,bias}/upernet_vittiny_ade20k_demo.py``, VPT+Bias's
``configs/bias/vpt_upernet_vittiny_ade20k_demo.py`` and full fine-tuning's
``configs/baseline/full_upernet_vittiny_ade20k_demo.py``; for
``mask2former_vittiny_ade20k_demo.py`` the same methods under the demo's
tiny Mask2Former (any head: the setting's file name picks it); for
``upernet_vitb_ade20k.py`` the ADE20K ViT-B configs (a GPU machine's job),
for ``vitb_vtab_fgvc.py`` the classification ones (give the task:
``--cfg-options task=dtd``). Each run (method, P, seed):

1. ``tools/train.py`` with the config's own schedule, ``randomness.seed``
   and, for the methods with prompts, ``num_prompts`` set (the others run
   once per seed, whatever ``--prompts`` says);
2. segmentation: single-scale mIoU from the validation at the end of
   training, then ``tools/test.py --aug-test`` for the multi-scale mIoU;
   classification (mmpretrain configs): top-1 from that validation.

A run's two tools run one after the other in one process of its own, forked
from a process per job that imported the tools' stack once (no interpreter
start per run). Each run also reports its trainable parameters (counted in the
model the config builds: what the method tunes and the heads), the median
train time per iteration, the peak memory (CPU: the process's peak
resident set at the end of training; GPU: the runner's logged peak of
allocated memory) and the checkpoint's size.

A run's key is everything that changes its result: method, P, seed, the
method config (path and content, its bases included), the options
(``--iters`` and ``--cfg-options``) and whether ``--aug-test`` runs. Its
results go to ``OUT/runs/NAME_KEY/result.json`` (``settings.json`` beside
it), written atomically: a run whose result exists is skipped, so the
command can be started again after an interruption (an interrupted run
resumes from its last checkpoint), and a run with changed settings is a new
run in its own folder. A failed run is reported in the table with its log,
and tried again the next time. Runs go ``--jobs`` at a time in parallel
processes, the CPU threads shared out between them. Writes
``OUT/comparison.md``, ``comparison.csv`` (one row per run) and
``comparison.png`` (accuracy against P per method, and against trainable
parameters). A domain-generalisation setting (``*_gta2city*.py``) adds a
table of each target's mIoU per run, the accuracy being their mean.

Example (every method on the demo, two seeds: 32 runs)::

    python tools/misc/make_ade20k_demo.py data/ade20k_demo
    python tools/analysis/compare_methods.py --jobs 2 --seeds 0 1 \\
        --out work_dirs/compare

The exit status is 1 when a run failed (the reports are written anyway).
"""
import argparse
import functools
import glob
import hashlib
import json
import os
import os.path as osp
import statistics
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional

from mmseg_cvpt.engine.tool_runs import (LAST_CHECKPOINT, last_checkpoint,
                                         run_in_own_process)
from mmseg_cvpt.methods import METHODS, method_of_config

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from report_files import NO_MATPLOTLIB, pyplot, write_csv  # noqa: E402

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = 'configs/cvpt/upernet_vittiny_ade20k_demo.py'


ALIASES = {'head_only': 'baseline'}  # the name before the other methods
COLUMNS = [  # (key, header, format)
    ('method', 'method', '{}'),
    ('prompts', 'P', '{}'),
    ('seed', 'seed', '{}'),
    ('trainable', 'trainable params', '{:,}'),
    ('accuracy', 'accuracy', '{:.2f}'),
    ('accuracy_ms', 'multi-scale', '{:.2f}'),
    ('train_s_per_iter', 'train s/iter', '{:.3f}'),
    ('peak_mib', 'peak memory MiB', '{:.0f}'),
    ('checkpoint_kib', 'checkpoint KiB', '{:,.0f}'),
]


@dataclass(frozen=True)
class Run:
    method: str
    prompts: int
    seed: int

    @property
    def name(self) -> str:
        return f'{self.method}_P{self.prompts}_seed{self.seed}'


def setting_of(config: str) -> str:
    """The setting's name: the config's file name without the prefix of
    the method whose config it is (``vpt_``, ``full_``)."""
    method, name = method_of_config(config), osp.basename(config)
    return name[len(method.prefix):] if method else name


def method_config(config: str, method: str) -> str:
    """The method's namesake of ``config``."""
    spec = METHODS[method]
    path = osp.join(osp.dirname(osp.dirname(config)), spec.folder,
                    spec.prefix + setting_of(config))
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{method} has no config {path}: write it (inherit '
            f'{config} and change the method), or leave {method} out of '
            '--methods')
    return path


def read_config(config: str):
    """The config file with its bases, as written (a classification
    config's task not resolved yet; mmengine is imported only now: a
    command-line error is told at once)."""
    from mmengine.config import Config
    return Config.fromfile(config)


@functools.lru_cache(maxsize=None)
def config_digest(config: str) -> str:
    """SHA-256 of the config's content, its bases resolved."""
    text = json.dumps(read_config(config).to_dict(), sort_keys=True,
                      default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def settings_of(run: Run, config: str, args) -> dict:
    """Everything that changes the result of ``run``: its key."""
    return dict(method=run.method, prompts=run.prompts, seed=run.seed,
                config=osp.relpath(config, REPO),
                config_sha256=config_digest(config),
                cfg_options=args.cfg_options, aug_test=not args.no_aug_test)


def run_folder(run: Run, settings: dict, out: str) -> str:
    """``OUT/runs/NAME_KEY``: one folder per run and settings."""
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    return osp.join(out, 'runs', f'{run.name}_{key.hexdigest()[:10]}')


def runs_of(methods: List[str], prompts: List[int],
            seeds: List[int]) -> List[Run]:
    return [
        Run(method, p, seed)
        for method in methods
        for p in (prompts if METHODS[method].uses_prompts else [0])
        for seed in seeds
    ]


def write_atomic(data: bytes, path: str) -> None:
    from mmseg_cvpt.engine.checkpoint import write_atomic as write
    write(data, path)


def options_dict(options: List[str]) -> dict:
    """``--cfg-options`` KEY=VALUE strings as mmengine's DictAction reads
    them."""
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser()
    parser.add_argument('--options', nargs='*', action=DictAction,
                        default={})
    return parser.parse_args(['--options', *options]).options


def schedule_end(cfg) -> Optional[int]:
    """The iteration where the learning-rate schedule of the config ``cfg``
    ends: the last ``end`` of its iteration-based ``param_scheduler``; None
    when one of them runs to the end of training (no ``end``) or counts
    epochs."""
    schedulers = cfg.get('param_scheduler') or []
    if isinstance(schedulers, dict):
        schedulers = [schedulers]
    if not schedulers or any(
            s.get('by_epoch', True) or s.get('end') is None
            for s in schedulers):
        return None
    return max(s['end'] for s in schedulers)


@functools.lru_cache(maxsize=None)
def prompt_key(config: str) -> str:
    """Where the config's backbone has ``num_prompts``: the backbone's own
    (segmentation) or its ``vit``'s (classification). Read before the runs
    start (mmengine's config parser is not thread-safe)."""
    backbone = read_config(config).model.backbone
    return ('model.backbone.num_prompts' if 'num_prompts' in backbone else
            'model.backbone.vit.num_prompts')


def run_options(run: Run, config: str, args) -> List[str]:
    options = [f'randomness.seed={run.seed}'] + args.cfg_options
    if METHODS[run.method].uses_prompts:
        options.append(f'{prompt_key(config)}={run.prompts}')
    return options


_BUILDING = threading.Lock()  # the registries' default scope is global


def trainable_parameters(config: str, options: List[str]) -> int:
    """The parameters that train in the model the config (with the
    options) builds."""
    from mmseg_cvpt.apis.task_package import build_model
    from mmseg_cvpt.engine import load_config
    with _BUILDING:
        model = build_model(load_config(config, options_dict(options)))
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---- one run ----------------------------------------------------------------
def read_json_lines(pattern: str) -> List[dict]:
    lines = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as file:
            lines += [json.loads(line) for line in file if line.strip()]
    return lines


def launch(steps: List[List[str]], logs: List[str], train_dir: str,
           threads: int) -> int:
    """Run the tools ``steps`` (argv lists: tools/train.py, then
    tools/test.py on :data:`LAST_CHECKPOINT` of ``train_dir``) one after
    the other in one process of its own, the output of each to its log;
    the process's peak resident set in KiB after the first step (the
    training's)."""
    spec = osp.join(osp.dirname(logs[0]), 'steps.json')
    write_atomic(
        json.dumps(dict(steps=steps, logs=logs, train_dir=train_dir)).encode(),
        spec)
    code = run_in_own_process(spec, threads, REPO)
    with open(spec) as file:
        done = len(json.load(file).get('peaks_kib', []))
    if code or done < len(steps):
        raise RuntimeError(f'{osp.basename(steps[done][1])} exited with '
                           f'{code or 1}; see {logs[done]}')
    with open(spec) as file:
        return json.load(file)['peaks_kib'][0]


def metric_of(lines: List[dict], key: str) -> Optional[float]:
    values = [line[key] for line in lines if key in line]
    return float(values[-1]) if values else None


def target_mious(lines: List[dict]) -> Dict[str, float]:
    """Each target's mIoU in the last evaluation of a domain-generalisation
    run (``MultiTargetIoUMetric``'s ``{target}/mIoU``); empty for one data
    set."""
    evaluated = [line for line in lines
                 if any(key.endswith('/mIoU') for key in line)]
    return {key[:-len('/mIoU')]: float(value)
            for key, value in (evaluated[-1] if evaluated else {}).items()
            if key.endswith('/mIoU')}


def train_and_evaluate(run: Run, config: str, work: str, args) -> dict:
    """Train one run (resuming) in ``work``, evaluate it; its result."""
    train_dir = osp.join(work, 'train')
    options = run_options(run, config, args)
    train = [sys.executable, 'tools/train.py', config, '--work-dir',
             train_dir]
    if osp.isfile(osp.join(train_dir, 'last_checkpoint')):
        train.append('--resume')
    steps = [train + ['--cfg-options', *options]]
    logs = [osp.join(work, 'train.log')]
    test_dir = osp.join(work, 'test_aug')
    if not args.no_aug_test and not args.classification:
        steps.append([
            sys.executable, 'tools/test.py', config, LAST_CHECKPOINT,
            '--aug-test', '--work-dir', test_dir, '--cfg-options', *options
        ])
        logs.append(osp.join(work, 'test_aug.log'))
    peak_kib = launch(steps, logs, train_dir, args.threads)
    checkpoint = last_checkpoint(train_dir)
    scalars = read_json_lines(osp.join(train_dir, '*', 'vis_data',
                                       'scalars.json'))
    iteration_times = [line['time'] for line in scalars
                       if 'time' in line and 'loss' in line]
    gpu_memory = [line['memory'] for line in scalars if 'memory' in line]
    classification = 'accuracy/top1' in {k for line in scalars for k in line}
    result = dict(
        method=METHODS[run.method].label, prompts=run.prompts,
        seed=run.seed, trainable=trainable_parameters(config, options),
        metric='top-1' if classification else 'mIoU',
        accuracy=metric_of(scalars, 'accuracy/top1' if classification
                           else 'mIoU'),
        accuracy_ms=None,
        train_s_per_iter=(statistics.median(iteration_times)
                          if iteration_times else None),
        peak_mib=max(gpu_memory) if gpu_memory else peak_kib / 1024,
        checkpoint_kib=osp.getsize(checkpoint) / 1024,
        checkpoint=checkpoint, log=logs[0], targets=target_mious(scalars))
    if len(steps) > 1:
        tested = read_json_lines(osp.join(test_dir, '*', '*.json'))
        result['accuracy_ms'] = metric_of(tested, 'mIoU')
        result['targets_ms'] = target_mious(tested)
    return result


def run_one(run: Run, args) -> dict:
    """A run's result: read back if it exists, else trained (a failure is
    a result with ``error``, not saved: the next start tries again)."""
    config = method_config(args.config, run.method)
    settings = settings_of(run, config, args)
    work = run_folder(run, settings, args.out)
    path = osp.join(work, 'result.json')
    if osp.isfile(path):
        with open(path) as file:
            return dict(json.load(file), status='skipped (done before)')
    start = time.monotonic()
    try:
        os.makedirs(work, exist_ok=True)
        write_atomic(json.dumps(settings, indent=1).encode(),
                     osp.join(work, 'settings.json'))
        result = train_and_evaluate(run, config, work, args)
    except (RuntimeError, OSError, ValueError) as error:
        print(f'{run.name}: FAILED: {error}', flush=True)
        return dict(method=METHODS[run.method].label, prompts=run.prompts,
                    seed=run.seed, error=str(error), status='failed')
    result['wall_s'] = round(time.monotonic() - start, 1)
    write_atomic(json.dumps(result, indent=1).encode(), path)
    print(f'{run.name}: {result["metric"]} '
          f'{cell(result, "accuracy", "{:.2f}")} ({result["wall_s"]:.0f} s)',
          flush=True)
    return dict(result, status='trained')


# ---- reports ----------------------------------------------------------------
def cell(result: dict, key: str, fmt: str) -> str:
    value = result.get(key)
    return '-' if value is None else fmt.format(value)


def metric_name(results: List[dict]) -> str:
    return next((r['metric'] for r in results if 'metric' in r), 'mIoU')


def markdown_table(results: List[dict]) -> str:
    lines = ['| ' + ' | '.join(h for _, h, _ in COLUMNS) + ' |',
             '|' + '---|' * len(COLUMNS)]
    for result in results:
        if 'error' in result:
            cells = [cell(result, key, fmt) for key, _, fmt in COLUMNS[:3]]
            cells += [f"FAILED: {result['error']}"] + [''] * (
                len(COLUMNS) - 4)
        else:
            cells = [cell(result, key, fmt) for key, _, fmt in COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def target_table(results: List[dict]) -> Optional[str]:
    """Each target's mIoU per run of a domain-generalisation setting
    (single-scale, and multi-scale where --aug-test ran), their mean being
    the accuracy column; None for a setting of one data set."""
    names = list(dict.fromkeys(
        name for r in results for name in r.get('targets') or {}))
    if not names:
        return None
    lines = ['| method | P | seed | ' + ' | '.join(names) + ' | mean |',
             '|' + '---|' * (len(names) + 4)]
    for result in results:
        for key, mean_key, scale in (('targets', 'accuracy', ''),
                                     ('targets_ms', 'accuracy_ms',
                                      ' (multi-scale)')):
            values = result.get(key)
            if values:
                lines.append(
                    f"| {result['method']}{scale} | {result['prompts']} | "
                    f"{result['seed']} | " + ' | '.join(
                        cell(values, name, '{:.2f}') for name in names) +
                    f" | {cell(result, mean_key, '{:.2f}')} |")
    return '\n'.join(lines)


def spread_table(results: List[dict]) -> str:
    """Mean and range over the seeds of each (method, P)."""
    groups: Dict[tuple, List[float]] = {}
    for result in results:
        if result.get('accuracy') is not None:
            groups.setdefault((result['method'], result['prompts']),
                              []).append(result['accuracy'])
    lines = ['| method | P | seeds | mean | min | max | spread |',
             '|---|---|---|---|---|---|---|']
    for (method, prompts), values in groups.items():
        lines.append(f'| {method} | {prompts} | {len(values)} | '
                     f'{statistics.mean(values):.2f} | {min(values):.2f} | '
                     f'{max(values):.2f} | {max(values) - min(values):.2f} |')
    return '\n'.join(lines)


MARKERS = 'osD^vP*Xh<>'


def plot_style(index: int) -> dict:
    """Colour and marker of the ``index``-th method of a plot: tab20's dark
    shades (matplotlib's ten default colours), then its light ones, each
    with its own marker, so that the eleven methods (and more) stay
    apart."""
    from matplotlib import colormaps
    shade = 2 * (index % 10) + (index // 10) % 2
    return dict(color=colormaps['tab20'](shade),
                marker=MARKERS[index % len(MARKERS)])


def plot(results: List[dict], path: str) -> Optional[str]:
    """Accuracy against P and against trainable parameters, mean over the
    seeds with their range (head-only, without prompts, is a dashed line
    in the first); None, or why there is no plot."""
    plt = pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    done = [r for r in results if r.get('accuracy') is not None]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for index, label in enumerate(dict.fromkeys(r['method'] for r in done)):
        style = dict(plot_style(index), label=label)
        points: Dict[int, List[dict]] = {}
        for result in done:
            if result['method'] == label:
                points.setdefault(result['prompts'], []).append(result)
        prompts = sorted(points)
        means = [statistics.mean(r['accuracy'] for r in points[p])
                 for p in prompts]
        errors = [[m - min(r['accuracy'] for r in points[p])
                   for m, p in zip(means, prompts)],
                  [max(r['accuracy'] for r in points[p]) - m
                   for m, p in zip(means, prompts)]]
        params = [points[p][0]['trainable'] or 0 for p in prompts]
        if prompts == [0]:  # head-only: no prompts
            axes[0].axhline(means[0], linestyle='--', color=style['color'],
                            label=label)
        else:
            axes[0].errorbar(prompts, means, yerr=errors, capsize=3, **style)
        axes[1].errorbar(params, means, yerr=errors, capsize=3, **style)
    metric = metric_name(done)
    axes[0].set(xlabel='prompts per layer P', ylabel=metric,
                title=f'{metric} against P')
    axes[1].set(xlabel='trainable parameters', ylabel=metric,
                title=f'{metric} against trainable parameters')
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ---- command line ----------------------------------------------------------
def folder_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be the output folder (made if missing), or
    None."""
    if osp.exists(path) and not osp.isdir(path):
        return 'is a file, not a folder: name a folder for the runs and ' \
            'the reports'
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as error:
        return f'cannot be created ({error.strerror}): name a folder you ' \
            'can write to'
    if not os.access(path, os.W_OK | os.X_OK):
        return 'is not writable: name a folder you can write to'
    return None


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='a method config; the others are its '
                        'namesakes in the method folders')
    parser.add_argument(
        '--methods', nargs='+', choices=list(METHODS) + list(ALIASES),
        default=list(METHODS), metavar='METHOD',
        help='the methods (default: all): ' + ', '.join(
            f'{key} = {method.label}' for key, method in METHODS.items()) +
        ' (head_only: the older name of baseline)')
    parser.add_argument('--prompts', type=int, nargs='+', default=[4, 16],
                        help='prompts per layer P of the methods with '
                        'prompts (the others run once)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0])
    parser.add_argument('--jobs', type=int, default=1,
                        help='runs in parallel (CPU threads shared out)')
    parser.add_argument('--iters', type=int,
                        help="train this many iterations instead of the "
                        "config's (validation and checkpoint at the end)")
    parser.add_argument('--no-aug-test', action='store_true',
                        help='skip the multi-scale evaluation')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        metavar='KEY=VALUE',
                        help='passed to every run (e.g. the data root)')
    parser.add_argument('--out', default='work_dirs/compare')
    args = parser.parse_args(argv)
    for name in ('jobs', 'iters'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f'--{name} must be at least 1, got {value}')
    # a repeated value would start the same run twice, in one folder
    args.methods, args.prompts, args.seeds = (
        list(dict.fromkeys(values))
        for values in ([ALIASES.get(m, m) for m in args.methods],
                       args.prompts, args.seeds))
    if min(args.prompts) < 1:
        parser.error('--prompts must be at least 1 (head-only is the '
                     'method without prompts)')
    args.out = osp.abspath(args.out)
    problem = folder_problem(args.out)
    if problem:
        parser.error(f'--out {args.out}: {problem}')
    args.config = osp.abspath(args.config)
    for method in args.methods:
        try:
            config = method_config(args.config, method)
            config_digest(config)
            if METHODS[method].uses_prompts:
                prompt_key(config)
        except FileNotFoundError as error:
            parser.error(str(error))
        except Exception as error:  # whatever stops the config loading
            parser.error(f'the {method} config does not load: {error!r}')
    cfg = read_config(args.config)
    # classification (mmpretrain configs): top-1, no multi-scale test
    args.classification = cfg.get('default_scope') == 'mmpretrain'
    if args.iters:
        if 'max_epochs' in cfg.get('train_cfg', {}):
            parser.error('--iters: this config trains by epoch '
                         '(train_cfg.max_epochs); give --cfg-options '
                         'train_cfg.max_epochs=N instead')
        cfg.merge_from_dict(options_dict(args.cfg_options))
        end = schedule_end(cfg)
        if end and args.iters > end:
            parser.error(
                f"--iters {args.iters}: the config's learning-rate schedule "
                f'(param_scheduler) ends at iteration {end}, so the last '
                f'{args.iters - end} iterations would train at its final '
                f'learning rate; give --iters <= {end}, or lengthen the '
                'schedule with --cfg-options (e.g. param_scheduler.1.end=N)')
        args.cfg_options += [
            f'train_cfg.max_iters={args.iters}',
            f'train_cfg.val_interval={args.iters}',
            f'default_hooks.checkpoint.interval={args.iters}',
            f'default_hooks.logger.interval={min(args.iters, 50)}'
        ]
    args.threads = max(1, (os.cpu_count() or 1) // args.jobs)
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    runs = runs_of(args.methods, args.prompts, args.seeds)
    print(f'{len(runs)} runs of {osp.relpath(args.config, REPO)} and its '
          'namesakes, '
          f'{args.jobs} at a time, {args.threads} threads each; results in '
          f'{args.out}/runs', flush=True)
    start = time.monotonic()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda run: run_one(run, args), runs))
    failed = [r for r in results if 'error' in r]
    command = 'python ' + ' '.join(
        [osp.relpath(osp.abspath(sys.argv[0]), REPO)] + sys.argv[1:])
    note = plot(results, osp.join(args.out, 'comparison.png'))
    targets = target_table(results)
    report = '\n\n'.join([
        f'Command: `{command}` (a result reused from before has the same '
        'settings: method, P, seed, config content, options; see '
        'runs/*/settings.json)',
        f'{len(runs)} runs ({len(failed)} failed), '
        f'{time.monotonic() - start:.0f} s; accuracy: {metric_name(results)}'
        ' (single-scale; multi-scale with --aug-test)',
        markdown_table(results),
    ] + ([f'Per target (mIoU; the mean is the accuracy):\n\n{targets}']
         if targets else []) + [
        'Over the seeds:',
        spread_table(results),
    ] + ([note] if note else []))
    write_atomic((report + '\n').encode(),
                 osp.join(args.out, 'comparison.md'))
    write_csv(osp.join(args.out, 'comparison.csv'), results,
              [key for key, _, _ in COLUMNS] +
              ['metric', 'status', 'wall_s', 'checkpoint', 'log', 'error'])
    print('\n' + report)
    print(f'\nWrote {args.out}/comparison.md, comparison.csv' +
          ('' if note else ', comparison.png'))
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
