"""Cost of the frozen ViT and the prompt methods against the number of
prompts P.

ViT-B/16 (mmseg layout; ``--arch dinov2_b14``: timm's DINOv2-B/14 with
four registers, at 518 for instance; random weights: costs do not depend on
the values) at each input size; P = 0 is the frozen ViT (every method with
no prompts is the same network). The methods are the rows of ``METHODS`` (a
label, a backbone config and a multiply-add formula each: the registered
methods' of ``mmseg_cvpt.methods``): VPT-deep in its
reference form (every prompted layer on the whole sequence, as published)
and in its fast form (prompts as keys and values only), CVPT, BPT (fast
VPT-deep with bilinear prompts) and DA-VPT (fast VPT-deep with its guidance
losses), each at every P; LoRA, AdaptFormer and Rein (no prompts) once.
Every configuration is measured in the same run: warm-up, then
``--repeats`` rounds in which each configuration takes one training step
(the fastest of ``--best-of`` back to back), then each one inference pass,
in an order rotated every round; the table reports medians over the rounds.
FLOPs are counted, and compared with the multiply-add formulas of
docs/performance.md (``*_macs``, each beside its method's code in the
package: ``mmseg_cvpt.models.costs`` holds the shared terms); the
definitions of what is measured are there too. Writes ``benchmark.md``,
``benchmark.csv`` (the table), ``benchmark_raw.csv`` (every timed run) and
``benchmark.png`` (cost against P) to ``--out``.

Example (the run in docs/performance.md)::

    python tools/analysis/benchmark.py --sizes 224 512 \\
        --prompts 0 1 10 50 100 200 --prompts-for 512=0,200 \\
        --methods vpt_reference vpt cvpt bpt davpt \\
        --batch 2 --repeats 10 --repeats-for 512=6 --best-of 2 \\
        --device cpu --out work_dirs/benchmark
    python tools/analysis/benchmark.py --arch dinov2_b14 --sizes 518 \
        --prompts 0 200 --batch 2 --repeats 4 --out work_dirs/benchmark_dinov2
    # our LoRA against HF peft's on timm's ViT-B/16 (pip install -r
    # requirements/peers.txt)
    python tools/analysis/benchmark.py --peers --sizes 224 --batch 2 \
        --repeats 6 --threads 2 --out work_dirs/peers
"""
import argparse
import statistics
import sys
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from mmseg.registry import MODELS  # noqa: E402

from mmseg_cvpt import methods as registry  # noqa: E402
from mmseg_cvpt.engine.cli import (add_debug_argument,  # noqa: E402
                                   int_at_least, positive_int, run_tool)
from mmseg_cvpt.models.backbones.vpt_vit import \
    vpt_reference_macs  # noqa: E402
from mmseg_cvpt.models.costs import Shape, frozen_macs, shape_of  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchmark_report import (DEFINITIONS, machine,  # noqa: E402
                              write_reports)
from meters import count_flops, peak_memory, seconds  # noqa: E402

VIT_B16 = dict(
    patch_size=16,
    embed_dims=768,
    num_layers=12,
    num_heads=12,
    mlp_ratio=4,
    out_indices=(2, 5, 8, 11),
    final_norm=True)
DINOV2_B14 = dict(vit=dict(
    type='TimmViT',
    model_name='vit_base_patch14_reg4_dinov2',
    out_indices=(2, 5, 8, 11),
    final_norm=True))
VIT_L16 = dict(VIT_B16, embed_dims=1024, num_layers=24, num_heads=16,
               out_indices=(5, 11, 17, 23))
DINOV2_L14 = dict(vit=dict(DINOV2_B14['vit'],
                           model_name='vit_large_patch14_reg4_dinov2',
                           out_indices=(5, 11, 17, 23)))
#: the frozen ViTs of --arch: a backbone's ViT arguments, without img_size
ARCHS = {'vit_b16': VIT_B16, 'vit_l16': VIT_L16, 'dinov2_b14': DINOV2_B14,
         'dinov2_l14': DINOV2_L14}
#: --dtype: the autocast dtype of the steps (None: float32, no autocast)
DTYPES = {'float32': None, 'bf16': torch.bfloat16}


def at_size(arch: dict, size: int) -> dict:
    """The ViT arguments with the input size."""
    if 'vit' in arch:
        return dict(vit=dict(arch['vit'], img_size=size))
    return dict(arch, img_size=size)


# ---- the methods ----------------------------------------------------------
@dataclass(frozen=True)
class Method:
    label: str
    backbone: Callable[[Shape], dict]  # its config, less the architecture
    macs: Callable[[Shape], Tuple[int, int]]  # (train step, inference)
    with_prompts: bool = True  # measured at each P (else once, at P = 0)


#: the frozen ViT, VPT-deep's reference form, then every registered method
#: with a cost formula (mmseg_cvpt.methods)
METHODS = {
    'frozen': Method('frozen ViT', lambda s: dict(type='VPTViT'), frozen_macs),
    'vpt_reference': Method(
        'VPT-deep (reference form)',
        lambda s: dict(type='VPTViT', prompt_form='reference'),
        vpt_reference_macs),
    **{name: Method(method.cost_label, method.backbone_for, method.cost,
                    method.uses_prompts)
       for name, method in registry.METHODS.items()
       if method.cost is not None},
}
PROMPT_METHODS = [key for key in METHODS if key != 'frozen']


@dataclass(frozen=True)
class Config:
    size: int
    method: str  # a key of METHODS
    prompts: int
    compiled: bool = False  # torch.compile of the backbone (--compile)

    @property
    def method_label(self) -> str:
        return METHODS[self.method].label + (' compiled' if self.compiled
                                             else '')

    @property
    def label(self) -> str:
        return f'{self.size}px {self.method_label} P={self.prompts}'


# ---- arguments --------------------------------------------------------------
non_negative_int = int_at_least(0)


def image_size(text: str) -> int:
    return positive_int(text)


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
        description='Time / memory / FLOPs of a frozen ViT (--arch) and the '
        'prompt methods against the number of prompts.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=DEFINITIONS)
    parser.add_argument('--arch', choices=ARCHS, default='vit_b16',
                        help='the frozen ViT: vit_b16 / vit_l16 (mmseg '
                        'ViT-B/16, ViT-L/16) or dinov2_b14 / dinov2_l14 '
                        '(timm vit_{base,large}_patch14_reg4_dinov2)')
    parser.add_argument('--sizes', type=image_size, nargs='+',
                        default=[224, 512], help='input sizes (square)')
    parser.add_argument('--prompts', type=non_negative_int, nargs='+',
                        default=[0, 1, 10, 50, 100, 200],
                        help='prompt counts P; 0 = the frozen ViT')
    parser.add_argument('--prompts-for', type=size_override(prompt_list),
                        nargs='*', default=[], metavar='SIZE=P,P,...',
                        help='other prompt counts for one size')
    parser.add_argument('--methods', nargs='+', choices=PROMPT_METHODS,
                        default=PROMPT_METHODS,
                        help='the methods besides the frozen ViT: ' +
                        ', '.join(f'{key} = {METHODS[key].label}'
                                  for key in PROMPT_METHODS))
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
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='float32',
                        help='bf16: every step under torch.autocast in '
                        'bfloat16 (weights, gradients stay float32)')
    parser.add_argument('--compile', action='store_true',
                        help='a compiled row (torch.compile of the backbone, '
                        'inductor) beside every eager one')
    parser.add_argument('--threads', type=positive_int,
                        help='torch CPU threads (default: torch\'s choice)')
    parser.add_argument('--clock', choices=('wall', 'cpu'), default='wall',
                        help='elapsed time, or the CPU time of this process '
                        '(CPU only; see "time" below)')
    parser.add_argument('--max-others', type=float, default=0.1,
                        help='retake a timed step (up to 3 times, after '
                        'waiting up to 15 s for calm) when other processes '
                        'used more than this share of the CPUs during it')
    parser.add_argument('--peers', action='store_true',
                        help='instead: our LoRA against HF peft\'s LoRA on '
                        'timm\'s ViT-B/16 at each size (train step and '
                        'inference; needs requirements/peers.txt)')
    parser.add_argument('--out', type=Path,
                        default=Path('work_dirs/benchmark'))
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    patch = shape_of(ARCHS[args.arch], 1, 0, 1).patch_size
    bad_sizes = [size for size in args.sizes if size % patch]
    if bad_sizes:
        parser.error(f'--sizes {bad_sizes}: not multiples of {args.arch}\'s '
                     f'patch size {patch}')
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


def configs_of(size: int, prompt_counts: List[int],
               methods: List[str] = PROMPT_METHODS,
               compiled: bool = False) -> List[Config]:
    """The frozen ViT (always: it is the reference) and the methods at
    P > 0; with ``compiled``, each also compiled, after the eager ones."""
    configs = [Config(size, 'frozen', 0)]
    configs += [Config(size, method, 0) for method in methods
                if not METHODS[method].with_prompts]
    for prompts in sorted(set(prompt_counts) - {0}):
        configs += [Config(size, method, prompts) for method in methods
                    if METHODS[method].with_prompts]
    if compiled:
        configs += [replace(config, compiled=True) for config in configs]
    return configs


# ---- models -----------------------------------------------------------------
def build(config: Config, arch: dict) -> nn.Module:
    """The backbone, in the state its method trains in: BPT's provider
    calibrated (on identity statistics: the cost does not depend on them),
    DA-VPT's ADE20K classes mapped onto its proxies."""
    shape = shape_of(arch, config.size, config.prompts, batch=1)
    model = MODELS.build(
        dict(METHODS[config.method].backbone(shape),
             num_prompts=config.prompts, **at_size(arch, config.size)))
    if hasattr(model.prompts, 'set_statistics'):
        model.prompts.set_statistics(
            torch.eye(shape.dims).repeat(shape.layers, 1, 1))
    guidance = model.addons.get('guidance')
    if guidance is not None:  # as ClassProxyHook does, before any class
        guidance.initialise(registry.DAVPT_CLASSES)  # means exist
        guidance.recluster()
    return model


def embeddings_require_grad(model: nn.Module) -> None:
    """The frozen ViT's floor: backward to the patch embeddings."""

    def leaf(module, inputs, output):
        if isinstance(output, tuple):  # mmseg's (tokens, hw_shape)
            return (output[0].detach().requires_grad_(), *output[1:])
        return output.detach().requires_grad_()

    patch_embed = next(module for name, module in model.vit.named_modules()
                       if name.split('.')[-1] == 'patch_embed')
    patch_embed.register_forward_hook(leaf)


@dataclass
class Case:
    """A configuration with its training and inference instances."""
    config: Config
    train_model: nn.Module
    infer_model: nn.Module


def build_cases(size: int, prompt_counts: List[int], device: torch.device,
                arch: dict = VIT_B16,
                methods: List[str] = PROMPT_METHODS,
                compiled: bool = False) -> List[Case]:
    torch.manual_seed(0)
    reference = build(Config(size, 'frozen', 0), arch).to(device)
    cases = []
    for config in configs_of(size, prompt_counts, methods, compiled):
        models = []
        for mode in (True, False):
            torch.manual_seed(config.prompts)
            model = build(config, arch).to(device)
            model.share_frozen_from(reference)
            if config.method == 'frozen' and mode:
                embeddings_require_grad(model)
            model.train(mode)
            # the compiled module forwards attributes to the backbone
            models.append(torch.compile(model) if config.compiled else model)
        cases.append(Case(config, *models))
    return cases


def train_step(model: nn.Module, images: torch.Tensor,
               dtype: Optional[torch.dtype] = None) -> None:
    """Forward, loss and backward, under autocast in ``dtype`` if given."""
    model.zero_grad(set_to_none=True)
    with torch.autocast(images.device.type, dtype=dtype,
                        enabled=dtype is not None):
        loss = sum(out.float().mean() for out in model(images))
        guidance = model.addons.get('guidance')
        if guidance is not None:  # DA-VPT: image i of class i
            labels = torch.arange(len(images), device=images.device)
            loss = loss + sum(guidance.losses(labels).values())
    loss.backward()


def infer(model: nn.Module, images: torch.Tensor,
          dtype: Optional[torch.dtype] = None) -> None:
    with torch.no_grad(), torch.autocast(images.device.type, dtype=dtype,
                                         enabled=dtype is not None):
        model(images)


def untimed_costs(case: Case, images: torch.Tensor,
                  dtype: Optional[torch.dtype] = None,
                  eager: Optional[dict] = None) -> dict:
    """Trainable parameters, FLOPs and peak memory of one configuration.

    One training step and one inference pass run first: counted after them,
    inference finds CVPT's prompt cache in place, as in deployment (the
    one-off fold or key / value projection is not an inference cost). A
    compiled configuration runs the operations of its eager twin (``eager``,
    its costs), whose FLOPs it reports; its peak memory is measured on a GPU
    (the allocator's) and not on the CPU (its kernels allocate out of
    sight of the op-level count): NaN there.
    """
    train = partial(train_step, case.train_model, images, dtype)
    inference = partial(infer, case.infer_model, images, dtype)
    train()
    inference()
    costs = dict(trainable=sum(p.numel() for p in
                               case.train_model.parameters()
                               if p.requires_grad))
    if case.config.compiled:
        costs.update(train_gflops=eager['train_gflops'],
                     infer_gflops=eager['infer_gflops'])
    else:
        costs.update(train_gflops=count_flops(train) / 1e9,
                     infer_gflops=count_flops(inference) / 1e9)
    measurable = images.device.type == 'cuda' or not case.config.compiled
    for key, step in (('train_peak_mib', train),
                      ('infer_peak_mib', inference)):
        costs[key] = peak_memory(step, images.device) if measurable else \
            float('nan')
    return costs


def formula_gflops(config: Config, arch: dict, batch: int) -> dict:
    """The multiply-add formulas' FLOPs (2 a multiply-add), in GFLOPs."""
    train, infer = METHODS[config.method].macs(
        shape_of(arch, config.size, config.prompts, batch))
    return dict(train_gflops_formula=2 * train / 1e9,
                infer_gflops_formula=2 * infer / 1e9)


def measure_size(size: int, prompt_counts: List[int], args,
                 raw: List[dict]) -> List[dict]:
    """All configurations of one input size: one row each."""
    arch = ARCHS[args.arch]
    dtype = DTYPES[args.dtype]
    cases = build_cases(size, prompt_counts, args.device, arch,
                        methods=args.methods, compiled=args.compile)
    images = torch.randn(args.batch, 3, size, size, device=args.device)
    rows = {}
    for case in cases:  # warm-up, FLOPs and memory, untimed
        eager = rows.get(replace(case.config, compiled=False))
        rows[case.config] = dict(
            size=size,
            method=case.config.method_label,
            prompts=case.config.prompts,
            **untimed_costs(case, images, dtype, eager),
            **formula_gflops(case.config, arch, args.batch))
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
                    run = partial(train_step, case.train_model, images,
                                  dtype)
                else:
                    run = partial(infer, case.infer_model, images, dtype)
                elapsed, others = min(
                    seconds(run, args.device, args.clock, args.max_others)
                    for _ in range(args.best_of))
                times.setdefault((case.config, kind), []).append(1e3 * elapsed)
                raw.append(dict(size=size,
                                method=case.config.method_label,
                                prompts=case.config.prompts, round=round_,
                                step=kind[:-3], ms=round(1e3 * elapsed, 2),
                                others_cpu_share=round(others, 3)))
        print(f'  round {round_ + 1}/{repeats} done', flush=True)
    for (config, kind), values in times.items():
        rows[config][kind] = statistics.median(values)
    for config, row in rows.items():  # against the frozen ViT, compiled
        frozen = rows[Config(size, 'frozen', 0, config.compiled)]  # or not
        row['train_vs_floor'] = row['train_ms'] / frozen['train_ms']
        row['infer_vs_frozen'] = row['infer_ms'] / frozen['infer_ms']
    return list(rows.values())


def measure_peers(args) -> None:
    """--peers: ``peer_lora``'s table at each size, to ``peers.md``."""
    import peer_lora
    peer_lora.import_peft()
    command = 'python ' + ' '.join([sys.argv[0]] + sys.argv[1:])
    tables = []
    for size in args.sizes:
        print(f'{size}x{size}:', flush=True)
        rows = peer_lora.measure(size, args.batch, args.repeats,
                                 args.best_of, args.device, args.clock,
                                 args.max_others)
        tables.append(peer_lora.table(
            rows, command, f'timm {peer_lora.MODEL} at {size}, batch '
            f'{args.batch}, {torch.get_num_threads()} threads, device '
            f'{args.device}, {args.repeats} rounds of the best of '
            f'{args.best_of}, medians; {machine()}'))
    report = '\n\n'.join(tables)
    (args.out / 'peers.md').write_text(report + '\n')
    print('\n' + report + f'\n\nWrote {args.out}/peers.md')


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peers:
        return measure_peers(args)
    print(DEFINITIONS)
    print(f'\nMachine: {machine()}\n', flush=True)
    prompts_for = dict(args.prompts_for)
    rows, raw = [], []
    for size in args.sizes:
        prompt_counts = prompts_for.get(size, args.prompts)
        print(f'{size}x{size}, P in {prompt_counts}:', flush=True)
        rows += measure_size(size, prompt_counts, args, raw)
    command = 'python ' + ' '.join([sys.argv[0]] + sys.argv[1:])
    report, note = write_reports(
        args.out, command, f'{args.arch}, batch {args.batch}, device '
        f'{args.device}, {args.dtype}, {args.clock} clock'
        + (' (CUDA events)' if args.device.type == 'cuda' else ''),
        rows, raw,
        METHODS['frozen'].label,
        [METHODS[key].label for key in PROMPT_METHODS])
    print('\n' + report)
    print(f'\nWrote {args.out}/benchmark.md, benchmark.csv, '
          f'benchmark_raw.csv' + ('' if note else ', benchmark.png'))


if __name__ == '__main__':
    run_tool(main)
