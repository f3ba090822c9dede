"""Cost of the frozen ViT, VPT-deep and CVPT against the number of prompts P.

ViT-B/16 (mmseg layout, random weights: costs do not depend on the values)
at each input size; P = 0 is the frozen ViT (VPT and CVPT with no prompts are
the same network). Every configuration is measured in the same run:
warm-up, then ``--repeats`` rounds in which each configuration takes one
training step (the fastest of ``--best-of`` back to back), then each one
inference pass, in an order rotated every round; the table reports medians
over the rounds. Writes ``benchmark.md``,
``benchmark.csv`` (the table), ``benchmark_raw.csv`` (every timed run) and
``benchmark.png`` (cost against P) to ``--out``.

Example (the run in docs/performance.md)::

    python tools/analysis/benchmark.py --sizes 224 512 \\
        --prompts 0 1 10 50 100 200 --prompts-for 512=0,200 \\
        --batch 2 --repeats 10 --repeats-for 512=6 --best-of 2 \\
        --device cpu --out work_dirs/benchmark
"""
import argparse
import csv
import os
import platform
import re
import statistics
import sys
import time
import weakref
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import (flop_registry, sdpa_backward_flop_count,
                                      sdpa_flop_count, shape_wrapper)

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mmseg.registry import MODELS  # noqa: E402

import mmseg_cvpt  # noqa: E402,F401  (registers the backbones)

VIT_B16 = dict(
    patch_size=16,
    embed_dims=768,
    num_layers=12,
    num_heads=12,
    mlp_ratio=4,
    out_indices=(2, 5, 8, 11),
    final_norm=True)
METHODS = {'frozen': 'frozen ViT', 'vpt': 'VPT-deep', 'cvpt': 'CVPT'}

DEFINITIONS = """\
Definitions
- train step: forward + backward of loss = sum of the means of the 4 output
  feature maps (layers 3, 6, 9, 12), gradients to the prompts only (the ViT
  is frozen and in eval mode, prompt dropout 0.1 active); no optimiser step.
- frozen ViT train step ("the floor every deep-prompt method pays"): the same
  loss with no prompts, backward from the loss to the token embeddings that
  enter block 1 (patch embedding + class token + position embedding, made a
  leaf that requires grad): the gradient through all 12 frozen blocks, no
  weight gradients. Layer-1 prompts of any deep-prompt method need exactly
  this backward pass.
- inference: forward in eval mode under torch.no_grad() (CVPT's cached prompt
  keys/values in place, as in deployment).
- time: median over the timed rounds, in ms per step of the whole batch; in
  each round a configuration's time is the fastest of --best-of steps
  taken back to back (a short disturbance then spoils one, not the round);
  --clock wall (default) is elapsed time, --clock cpu the CPU time the
  process used (user + system, all its threads), which time the hypervisor
  gives to other machines does not inflate (with --threads 1 it is the
  elapsed time the step takes when nothing else runs). Other programs on
  the machine distort CPU timings, so each timed step waits (up to 15 s)
  for a calm machine and is retaken (up to 3 times) when other processes
  (or the hypervisor) used more than --max-others of the CPUs during it;
  benchmark_raw.csv records that share for each kept step.
- peak memory: the most bytes held at once by tensors that the step's ops
  allocate (activations, saved tensors, gradients, temporaries), counted by
  a dispatch mode: what torch.cuda.max_memory_allocated() minus the memory
  allocated before the step reports on a GPU, the same on every device;
  weights and inputs are not included. Measured once (deterministic).
- GFLOPs: torch.utils.flop_counter's formulas summed over the ops run
  (matrix products and attention; 1 multiply-add = 2 FLOPs; element-wise
  ops not counted), per step of the whole batch.
- trainable: parameters with requires_grad (prompts)."""
# Issue 5's targets: (size, P, metric, numerator, denominator, bound, strict)
TARGETS = [
    (512, 200, 'train_ms', 'cvpt', 'vpt', 0.95, False),
    (224, 200, 'train_ms', 'cvpt', 'vpt', 0.65, False),
    (224, 10, 'train_ms', 'cvpt', 'frozen', 1.10, False),
    (224, 10, 'infer_ms', 'cvpt', 'frozen', 1.05, False),
    (512, 200, 'infer_ms', 'cvpt', 'frozen', 1.25, False),
    (224, 200, 'train_peak_mib', 'cvpt', 'vpt', 1.0, True),
    (512, 200, 'train_peak_mib', 'cvpt', 'vpt', 1.0, True),
]


@dataclass(frozen=True)
class Config:
    size: int
    method: str  # 'frozen' | 'vpt' | 'cvpt'
    prompts: int

    @property
    def label(self) -> str:
        return f'{self.size}px {METHODS[self.method]} P={self.prompts}'


# ---- arguments --------------------------------------------------------------
def int_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not an integer')
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'{value} is below the minimum {minimum}')
        return value

    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def image_size(text: str) -> int:
    value = positive_int(text)
    if value % VIT_B16['patch_size']:
        raise argparse.ArgumentTypeError(
            f'image size {value} is not a multiple of the patch size '
            f"{VIT_B16['patch_size']}")
    return value


def size_override(parse_value: Callable) -> Callable:
    """'SIZE=VALUE' -> (size, parse_value(VALUE))."""

    def parse(text: str):
        size, sep, value = text.partition('=')
        if not sep:
            raise argparse.ArgumentTypeError(
                f'{text!r} should look like SIZE=VALUE, e.g. 512=0,10,200')
        return image_size(size), parse_value(value)

    return parse


def prompt_list(text: str) -> List[int]:
    return sorted({non_negative_int(p) for p in text.split(',') if p})


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time / memory / FLOPs of frozen ViT-B/16, VPT-deep and '
        'CVPT against the number of prompts.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DEFINITIONS)
    parser.add_argument('--sizes', type=image_size, nargs='+',
                        default=[224, 512], help='input sizes (square)')
    parser.add_argument('--prompts', type=non_negative_int, nargs='+',
                        default=[0, 1, 10, 50, 100, 200],
                        help='prompt counts P; 0 = the frozen ViT')
    parser.add_argument('--prompts-for', type=size_override(prompt_list),
                        nargs='*', default=[], metavar='SIZE=P,P,...',
                        help='other prompt counts for one size')
    parser.add_argument('--batch', type=positive_int, default=2)
    parser.add_argument('--repeats', type=positive_int, default=5,
                        help='timed rounds')
    parser.add_argument('--best-of', type=positive_int, default=1,
                        help='steps per configuration and round, the '
                        'fastest kept')
    parser.add_argument('--repeats-for', type=size_override(positive_int),
                        nargs='*', default=[], metavar='SIZE=N',
                        help='other number of timed rounds for one size')
    parser.add_argument('--device', default='cpu',
                        help="'cpu' or 'cuda[:index]'")
    parser.add_argument('--threads', type=positive_int,
                        help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help='elapsed time, or the CPU time of this process '
                        '(CPU only; see "time" below)')
    parser.add_argument('--max-others', type=float, default=0.1,
                        help='retake a timed step (up to 3 times, after '
                        'waiting up to 15 s for calm) when other processes '
                        'used more than this share of the CPUs during it')
    parser.add_argument('--out', type=Path,
                        default=Path('work_dirs/benchmark'))
    args = parser.parse_args(argv)
    for option in ('prompts_for', 'repeats_for'):
        unknown = {size for size, _ in getattr(args, option)} - set(args.sizes)
        if unknown:
            parser.error(f"--{option.replace('_', '-')} names sizes "
                         f'{sorted(unknown)} that are not in --sizes')
    try:
        args.device = torch.device(args.device)
    except RuntimeError as error:
        parser.error(f'--device: {error}')
    if args.device.type not in ('cpu', 'cuda'):
        parser.error(f"--device must be 'cpu' or 'cuda[:index]', got "
                     f'{args.device}')
    if args.device.type == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device is available')
    if args.device.type == 'cuda' and args.clock == 'cpu':
        parser.error('--clock cpu measures CPU work; time a GPU with --clock '
                     'wall')
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f'--out {args.out}: {error}')
    return args


def configs_of(size: int, prompt_counts: List[int]) -> List[Config]:
    """The frozen ViT (always: it is the reference) and VPT / CVPT at P > 0."""
    configs = [Config(size, 'frozen', 0)]
    for prompts in sorted(set(prompt_counts) - {0}):
        configs += [Config(size, 'vpt', prompts),
                    Config(size, 'cvpt', prompts)]
    return configs


# ---- models -----------------------------------------------------------------
def build(config: Config, arch: dict) -> nn.Module:
    backbone = 'CVPTViT' if config.method == 'cvpt' else 'VPTViT'
    return MODELS.build(
        dict(type=backbone, img_size=config.size, num_prompts=config.prompts,
             **arch))


def share_frozen_weights(model: nn.Module, reference: nn.Module) -> None:
    """Point the frozen ViT weights of ``model`` at ``reference``'s."""
    weights = reference.state_dict()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if model.is_pretrained_key(name):
            tensor.data = weights[name]


def embeddings_require_grad(model: nn.Module) -> None:
    """The frozen ViT's floor: backward to the patch embeddings."""

    def leaf(module, inputs, output):
        tokens, hw_shape = output
        return tokens.detach().requires_grad_(), hw_shape

    model.patch_embed.register_forward_hook(leaf)


@dataclass
class Case:
    """A configuration with its training and inference instances."""
    config: Config
    train_model: nn.Module
    infer_model: nn.Module


def build_cases(size: int, prompt_counts: List[int], device: torch.device,
                arch: dict = VIT_B16) -> List[Case]:
    torch.manual_seed(0)
    reference = build(Config(size, 'frozen', 0), arch).to(device)
    cases = []
    for config in configs_of(size, prompt_counts):
        models = []
        for mode in (True, False):
            torch.manual_seed(config.prompts)
            model = build(config, arch).to(device)
            share_frozen_weights(model, reference)
            models.append(model.train(mode))
        if config.method == 'frozen':
            embeddings_require_grad(models[0])
        cases.append(Case(config, *models))
    return cases


def train_step(model: nn.Module, images: torch.Tensor) -> None:
    model.zero_grad(set_to_none=True)
    loss = sum(out.mean() for out in model(images))
    loss.backward()


def infer(model: nn.Module, images: torch.Tensor) -> None:
    with torch.no_grad():
        model(images)


# ---- measurements -----------------------------------------------------------
def cpu_flash_attention_flops(query, key, value, *args, out_shape=None,
                              **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def cpu_flash_attention_backward_flops(grad_out, query, key, value, *args,
                                       out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


# torch's formulas, plus the CPU attention kernel they do not know.
FLOP_FORMULAS = {
    **flop_registry,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
    shape_wrapper(cpu_flash_attention_flops),
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
    shape_wrapper(cpu_flash_attention_backward_flops),
}


class FlopCounter(TorchDispatchMode):
    """Sums FLOP_FORMULAS over every op run (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = FLOP_FORMULAS.get(func._overloadpacket)
        if formula is not None:
            self.flops += formula(*args, out_val=out, **kwargs)
        return out


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounter() as counter:
        step()
    return counter.flops


class TensorMemory(TorchDispatchMode):
    """Bytes of the tensor storages that ops create, while alive; and the peak.

    A storage counts from the op that allocates it (an output sharing no
    storage with the op's inputs: views and in-place results do not count)
    until it is freed (storages keep their Python object for their whole
    life, so a weakref callback sees the free).
    """

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {t.untyped_storage().data_ptr()
                  for t in tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                storage = tensor.untyped_storage()
                if storage.data_ptr() not in inputs and storage.nbytes():
                    inputs.add(storage.data_ptr())
                    self._track(storage)
        return out

    def _track(self, storage) -> None:
        nbytes = storage.nbytes()
        self.live += nbytes
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._free, nbytes)

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes


def peak_memory(step: Callable[[], None]) -> float:
    """Peak MiB of tensors the step allocates (see DEFINITIONS)."""
    with TensorMemory() as memory:
        step()
    return memory.peak / 2**20


class CpuShare:
    """Share of the machine's CPU time used by anything but this process.

    From /proc/stat (all CPUs, including time stolen by the hypervisor) and
    this process's own CPU time; None where /proc/stat is missing.
    """
    TICKS = os.sysconf('SC_CLK_TCK')

    @staticmethod
    def _snapshot():
        try:
            with open('/proc/stat') as stat:
                ticks = [int(t) for t in stat.readline().split()[1:]]
        except OSError:
            return None
        own = os.times()
        busy = sum(ticks) - ticks[3] - ticks[4]  # minus idle and iowait
        return sum(ticks), busy, own.user + own.system

    def __enter__(self):
        self.start = self._snapshot()
        return self

    def __exit__(self, *exc):
        self.end = self._snapshot()

    @property
    def others(self) -> Optional[float]:
        if self.start is None or self.end is None:
            return None
        total, busy, own = (b - a for a, b in zip(self.start, self.end))
        return max(0., busy / self.TICKS - own) / max(total / self.TICKS,
                                                       1e-9)


def wait_for_quiet(threshold: float, patience: float = 15.) -> None:
    """Wait (at most ``patience`` s) for other processes to calm down."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        with CpuShare() as share:
            time.sleep(0.25)
        if share.others is None or share.others < threshold:
            return


def seconds(step: Callable[[], None], device: torch.device, clock: str,
            threshold: float, attempts: int = 3) -> Tuple[float, float]:
    """Time of the step by ``clock``, retaken while other processes used
    more than ``threshold`` of the CPUs; returns (seconds, their share)."""
    read_clock = time.process_time if clock == 'cpu' else time.perf_counter
    for _ in range(attempts):
        wait_for_quiet(threshold)
        with CpuShare() as share:
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            start = read_clock()
            step()
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            elapsed = read_clock() - start
        if share.others is None or share.others < threshold:
            break
    return elapsed, share.others or 0.


def untimed_costs(case: Case, images: torch.Tensor) -> dict:
    """Trainable parameters, FLOPs and peak memory of one configuration.

    One training step and one inference pass run first: counted after them,
    inference finds CVPT's prompt cache in place, as in deployment (the
    one-off fold or key / value projection is not an inference cost).
    """
    train = partial(train_step, case.train_model, images)
    inference = partial(infer, case.infer_model, images)
    train()
    inference()
    return dict(
        trainable=sum(p.numel() for p in case.train_model.parameters()
                      if p.requires_grad),
        train_gflops=count_flops(train) / 1e9,
        infer_gflops=count_flops(inference) / 1e9,
        train_peak_mib=peak_memory(train),
        infer_peak_mib=peak_memory(inference))


def measure_size(size: int, prompt_counts: List[int], args,
                 raw: List[dict]) -> List[dict]:
    """All configurations of one input size: one row each."""
    cases = build_cases(size, prompt_counts, args.device)
    images = torch.randn(args.batch, 3, size, size, device=args.device)
    rows = {}
    for case in cases:  # warm-up, FLOPs and memory, untimed
        rows[case.config] = dict(
            size=size,
            method=METHODS[case.config.method],
            prompts=case.config.prompts,
            **untimed_costs(case, images))
        print(f'  warmed up {case.config.label}', flush=True)
    repeats = dict(args.repeats_for).get(size, args.repeats)
    times: Dict[Tuple[Config, str], List[float]] = {}
    for round_ in range(repeats):
        shift = round_ % len(cases)
        order = cases[shift:] + cases[:shift]
        # all training steps, then all inference passes: a pass never
        # follows the very different memory pattern of the other kind
        for kind in ('train_ms', 'infer_ms'):
            for case in order:
                if kind == 'train_ms':
                    run = partial(train_step, case.train_model, images)
                else:
                    run = partial(infer, case.infer_model, images)
                elapsed, others = min(
                    seconds(run, args.device, args.clock, args.max_others)
                    for _ in range(args.best_of))
                times.setdefault((case.config, kind), []).append(1e3 * elapsed)
                raw.append(dict(size=size, method=METHODS[case.config.method],
                                prompts=case.config.prompts, round=round_,
                                step=kind[:-3], ms=round(1e3 * elapsed, 2),
                                others_cpu_share=round(others, 3)))
        print(f'  round {round_ + 1}/{repeats} done', flush=True)
    for (config, kind), values in times.items():
        rows[config][kind] = statistics.median(values)
    frozen = rows[Config(size, 'frozen', 0)]
    for row in rows.values():
        row['train_vs_floor'] = row['train_ms'] / frozen['train_ms']
        row['infer_vs_frozen'] = row['infer_ms'] / frozen['infer_ms']
    return list(rows.values())


# ---- reports ----------------------------------------------------------------
COLUMNS = [  # (key, header, format)
    ('size', 'size', '{}'),
    ('method', 'method', '{}'),
    ('prompts', 'P', '{}'),
    ('trainable', 'trainable params', '{:,}'),
    ('train_gflops', 'train GFLOPs', '{:.1f}'),
    ('infer_gflops', 'inference GFLOPs', '{:.1f}'),
    ('train_ms', 'train step ms', '{:.0f}'),
    ('train_vs_floor', 'train / floor', '{:.3f}'),
    ('infer_ms', 'inference ms', '{:.0f}'),
    ('infer_vs_frozen', 'inference / frozen', '{:.3f}'),
    ('train_peak_mib', 'train peak MiB', '{:.0f}'),
    ('infer_peak_mib', 'inference peak MiB', '{:.0f}'),
]


def markdown_table(rows: List[dict]) -> str:
    lines = ['| ' + ' | '.join(h for _, h, _ in COLUMNS) + ' |',
             '|' + '---|' * len(COLUMNS)]
    for row in rows:
        lines.append('| ' + ' | '.join(fmt.format(row[key])
                                        for key, _, fmt in COLUMNS) + ' |')
    return '\n'.join(lines)


def paired_ratio(raw: List[dict], numerator: Tuple, denominator: Tuple,
                 step: str) -> Optional[float]:
    """Median over rounds of the ratio of two steps timed in the same round."""
    per_round: Dict[Tuple, Dict[int, float]] = {numerator: {}, denominator: {}}
    for run in raw:
        key = (run['size'], run['method'], run['prompts'])
        if key in per_round and run['step'] == step:
            per_round[key][run['round']] = run['ms']
    rounds = per_round[numerator].keys() & per_round[denominator].keys()
    if not rounds:
        return None
    return statistics.median(per_round[numerator][r] /
                             per_round[denominator][r] for r in rounds)


def check_targets(rows: List[dict], raw: List[dict]) -> List[str]:
    """The issue's targets that this run measured: ratio of the medians
    (the target's measure) and, as a check on noise, the median of the
    ratios within each round."""
    by_key = {(r['size'], r['method'], r['prompts']): r for r in rows}
    lines = []
    for size, prompts, metric, num, den, bound, strict in TARGETS:
        num_key = (size, METHODS[num], prompts)
        den_key = (size, METHODS[den], 0 if den == 'frozen' else prompts)
        if num_key not in by_key or den_key not in by_key:
            continue
        ratio = by_key[num_key][metric] / by_key[den_key][metric]
        holds = ratio < bound if strict else ratio <= bound
        floor = ' (floor)' if (den, metric) == ('frozen', 'train_ms') else ''
        line = (f'- {size}x{size}, P={prompts}: {METHODS[num]} {metric} / '
                f'{METHODS[den]}{floor} = '
                f'{ratio:.3f} (target {"<" if strict else "<="} {bound}): '
                f'{"holds" if holds else "FAILS"}')
        if metric.endswith('_ms'):
            paired = paired_ratio(raw, num_key, den_key, metric[:-3])
            line += f'; per-round paired ratio {paired:.3f}'
        lines.append(line)
    return lines


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as info:
            cpu = re.search(r'model name\s*:\s*(.*)', info.read())[1]
    except (OSError, TypeError):
        pass
    return (f'{cpu}, {os.cpu_count()} logical CPUs, torch '
            f'{torch.__version__} with {torch.get_num_threads()} threads, '
            f'python {platform.python_version()}')


def write_csv(path: Path, rows: List[dict]) -> None:
    with open(path, 'w', newline='') as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot(rows: List[dict], path: Path) -> Optional[str]:
    """Cost against P, one row of panels per size; None if no matplotlib."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        return ('matplotlib is not installed: no plot (pip install '
                'matplotlib, see requirements/optional.txt)')
    panels = [('train_ms', 'train step (ms)'), ('infer_ms', 'inference (ms)'),
              ('train_peak_mib', 'train peak memory (MiB)'),
              ('train_gflops', 'train GFLOPs')]
    sizes = sorted({r['size'] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(panels),
                             figsize=(4 * len(panels), 3.2 * len(sizes)),
                             squeeze=False)
    for ax_row, size in zip(axes, sizes):
        frozen = next(r for r in rows if r['size'] == size
                      and r['method'] == METHODS['frozen'])
        for ax, (key, title) in zip(ax_row, panels):
            for method in ('vpt', 'cvpt'):
                points = [frozen] + [r for r in rows if r['size'] == size
                                     and r['method'] == METHODS[method]]
                ax.plot([r['prompts'] for r in points],
                        [r[key] for r in points], marker='o',
                        label=METHODS[method])
            ax.axhline(frozen[key], color='gray', linestyle='--',
                       label='frozen ViT (P=0)')
            ax.set_title(f'{size}x{size}: {title}', fontsize=10)
            ax.set_xlabel('prompts P')
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(DEFINITIONS)
    print(f'\nMachine: {machine()}\n', flush=True)
    prompts_for = dict(args.prompts_for)
    rows, raw = [], []
    for size in args.sizes:
        prompt_counts = prompts_for.get(size, args.prompts)
        print(f'{size}x{size}, P in {prompt_counts}:', flush=True)
        rows += measure_size(size, prompt_counts, args, raw)
    command = 'python ' + ' '.join([sys.argv[0]] + sys.argv[1:])
    table = markdown_table(rows)
    targets = check_targets(rows, raw)
    note = plot(rows, args.out / 'benchmark.png')
    report = '\n\n'.join([
        f'Command: `{command}`',
        f'Machine: {machine()}; batch {args.batch}, device {args.device}, '
        f'{args.clock} clock',
        table,
        'Targets of issue 5:\n' + ('\n'.join(targets) or '(none measured)'),
        DEFINITIONS,
    ] + ([note] if note else []))
    (args.out / 'benchmark.md').write_text(report + '\n')
    write_csv(args.out / 'benchmark.csv', rows)
    write_csv(args.out / 'benchmark_raw.csv', raw)
    print('\n' + report)
    print(f'\nWrote {args.out}/benchmark.md, benchmark.csv, '
          f'benchmark_raw.csv' + ('' if note else ', benchmark.png'))


if __name__ == '__main__':
    main()
