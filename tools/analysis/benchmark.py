"""Cost of the frozen ViT and the prompt methods against the number of
prompts P.

ViT-B/16 (mmseg layout, random weights: costs do not depend on the values)
at each input size; P = 0 is the frozen ViT (every method with no prompts is
the same network). The methods are the rows of ``METHODS`` (a label, a
backbone config and a multiply-add formula each): VPT-deep in its reference
form (every prompted layer on the whole sequence, as published) and in its
fast form (prompts as keys and values only), CVPT, BPT (fast VPT-deep with
bilinear prompts) and DA-VPT (fast VPT-deep with its guidance losses).
Every configuration is measured in the same run: warm-up, then
``--repeats`` rounds in which each configuration takes one training step
(the fastest of ``--best-of`` back to back), then each one inference pass,
in an order rotated every round; the table reports medians over the rounds.
FLOPs are counted, and compared with the multiply-add formulas of
docs/performance.md (``*_macs`` below). Writes ``benchmark.md``,
``benchmark.csv`` (the table), ``benchmark_raw.csv`` (every timed run) and
``benchmark.png`` (cost against P) to ``--out``.

Example (the run in docs/performance.md)::

    python tools/analysis/benchmark.py --sizes 224 512 \\
        --prompts 0 1 10 50 100 200 --prompts-for 512=0,200 \\
        --methods vpt_reference vpt cvpt bpt davpt \\
        --batch 2 --repeats 10 --repeats-for 512=6 --best-of 2 \\
        --device cpu --out work_dirs/benchmark
"""
import argparse
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
from types import SimpleNamespace
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
from mmseg_cvpt.models.attention import prefer_folded  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_files import NO_MATPLOTLIB, pyplot, write_csv  # noqa: E402

VIT_B16 = dict(
    patch_size=16,
    embed_dims=768,
    num_layers=12,
    num_heads=12,
    mlp_ratio=4,
    out_indices=(2, 5, 8, 11),
    final_norm=True)


# ---- multiply-add formulas (docs/performance.md) ---------------------------
@dataclass(frozen=True)
class Shape:
    """What the multiply-add counts depend on."""
    batch: int  # B
    patches: int  # n
    prompts: int  # m
    dims: int  # D
    heads: int  # H
    layers: int  # L
    mlp_ratio: int  # r
    patch_size: int  # p

    @property
    def tokens(self) -> int:
        """N: the class token and the patches."""
        return self.patches + 1


def shape_of(arch: dict, size: int, prompts: int, batch: int) -> Shape:
    return Shape(batch, (size // arch['patch_size'])**2, prompts,
                 arch['embed_dims'], arch['num_heads'], arch['num_layers'],
                 arch['mlp_ratio'], arch['patch_size'])


def block_forward(s: Shape, queries: int, keys: int) -> int:
    """A block on one image: W_q, W_k, W_v, W_o and the MLP on its T query
    tokens, (4 + 2 r) T D^2, and attention to S keys, 2 T S D."""
    projections = (4 + 2 * s.mlp_ratio) * queries * s.dims**2
    return projections + 2 * queries * keys * s.dims


def block_backward(s: Shape, queries: int, keys: int) -> int:
    """Its gradient to the input tokens (frozen weights: no weight
    gradients): the same (4 + 2 r) T D^2, and SDPA's backward 5 T S D (the
    scores recomputed, then the gradients of A, V, Q and K)."""
    projections = (4 + 2 * s.mlp_ratio) * queries * s.dims**2
    return projections + 5 * queries * keys * s.dims


def embedding(s: Shape) -> int:
    """The patch embedding, a p x p convolution: B n 3 p^2 D."""
    return s.batch * s.patches * 3 * s.patch_size**2 * s.dims


def sequence_macs(s: Shape, tokens: int) -> Tuple[int, int]:
    """(train step, inference) of the blocks on ``tokens`` tokens per image,
    the train step's backward reaching layer 1's input."""
    blocks = s.batch * s.layers
    infer = embedding(s) + blocks * block_forward(s, tokens, tokens)
    return infer + blocks * block_backward(s, tokens, tokens), infer


def frozen_macs(s: Shape) -> Tuple[int, int]:
    return sequence_macs(s, s.tokens)


def vpt_reference_macs(s: Shape) -> Tuple[int, int]:
    """Every block on [cls, P, patches], N + m tokens."""
    return sequence_macs(s, s.tokens + s.prompts)


def vpt_macs(s: Shape) -> Tuple[int, int]:
    """Fast VPT-deep: N queries attend to N + m keys. The prompts' keys and
    values, 2 m D^2 a layer, once per step (cached for inference) and as
    much again for their gradient; layer 1's W_q, W_k, W_v need no gradient
    to their input (the embeddings need none)."""
    num, keys, blocks = s.tokens, s.tokens + s.prompts, s.batch * s.layers
    prompt_side = 2 * s.prompts * s.dims**2
    infer = embedding(s) + blocks * block_forward(s, num, keys)
    backward = (blocks * block_backward(s, num, keys)
                - s.batch * 3 * num * s.dims**2)
    return infer + backward + 2 * s.layers * prompt_side, infer


def cvpt_macs(s: Shape) -> Tuple[int, int]:
    return cvpt_step_macs(s, with_grad=True), cvpt_step_macs(s, False)


def cvpt_step_macs(s: Shape, with_grad: bool) -> int:
    """CVPT at position 3 with shared weights, in the form (folded or not)
    that ``prefer_folded`` picks. Per image and layer, N tokens:

    * folded: x M and A U, 2 N H m D forward, 4 N H m D backward (gradients
      of x, M, A and U; at layer 1 x needs none); folding 4 m D^2 + m D;
    * unfolded: W_q, W_o and attention to m keys, 2 N D^2 + 2 N m D
      forward, 2 N D^2 + 5 N m D backward (at layer 1 W_q's input needs
      none); the prompts' keys and values 2 m D^2.

    The prompts' side is computed once per step and differentiated (as much
    again); inference uses the cached one. Layer 1's self-attention needs
    no gradient (its input needs none).
    """
    mha = SimpleNamespace(embed_dim=s.dims, num_heads=s.heads)
    num, m, dims = s.tokens, s.prompts, s.dims
    if prefer_folded(mha, m, with_grad):
        forward = 2 * num * s.heads * m * dims
        backward = 4 * num * s.heads * m * dims
        layer1_without = num * s.heads * m * dims
        prompt_side = 4 * m * dims**2 + m * dims
    else:
        forward = 2 * num * dims**2 + 2 * num * m * dims
        backward = 2 * num * dims**2 + 5 * num * m * dims
        layer1_without = num * dims**2
        prompt_side = 2 * m * dims**2
    train, infer = frozen_macs(s)
    blocks = s.batch * s.layers
    if not with_grad:
        return infer + blocks * forward
    layer1_attention = 4 * num * dims**2 + 5 * num**2 * dims
    return (train + blocks * (forward + backward)
            - s.batch * (layer1_attention + layer1_without)
            + 2 * s.layers * prompt_side)


# ---- the methods ----------------------------------------------------------
BPT_RANK = 50  # p of BPT's bilinear prompts (configs/bpt: m = p = 50)
DAVPT_PROXIES = 20  # k of DA-VPT (configs/davpt), at most P
DAVPT_CLASSES = 150  # C: ADE20K's classes, mapped onto the k proxies


def bpt_rank(s: Shape) -> int:
    return min(BPT_RANK, s.dims)


def bpt_macs(s: Shape) -> Tuple[int, int]:
    """Fast VPT-deep with bilinear prompts P_l = A_l B_l^T (rank p): the
    product L m p D every forward, and the gradients of A and B, 2 L m p D,
    in the train step (inference computes the product, then finds the
    prompts' keys and values cached)."""
    train, infer = vpt_macs(s)
    product = s.layers * s.prompts * bpt_rank(s) * s.dims
    return train + 3 * product, infer + product


def davpt_macs(s: Shape) -> Tuple[int, int]:
    """Fast VPT-deep with DA-VPT's guidance of the last layer (training
    only): the class token's query W_q LN1(x_cls), B D^2, and its gradient,
    B D^2; two Proxy-Anchor losses, each cosine similarities B k D and
    their gradients to the features and the proxies, 2 B k D; the running
    class sums, C B D."""
    train, infer = vpt_macs(s)
    proxies = min(DAVPT_PROXIES, s.prompts)
    guidance = (2 * s.batch * s.dims**2 + 2 * 3 * s.batch * proxies * s.dims
                + DAVPT_CLASSES * s.batch * s.dims)
    return train + guidance, infer


@dataclass(frozen=True)
class Method:
    label: str
    backbone: Callable[[Shape], dict]  # its config, less the architecture
    macs: Callable[[Shape], Tuple[int, int]]  # (train step, inference)


def bpt_backbone(s: Shape) -> dict:
    return dict(type='VPTViT', prompt_cfg=dict(type='BilinearPrompts',
                                               rank=bpt_rank(s)))


def davpt_backbone(s: Shape) -> dict:
    return dict(type='VPTViT', guidance_cfg=dict(
        type='ProxyGuidance', num_guided=min(DAVPT_PROXIES, s.prompts)))


METHODS = {
    'frozen': Method('frozen ViT', lambda s: dict(type='VPTViT'), frozen_macs),
    'vpt_reference': Method(
        'VPT-deep (reference form)',
        lambda s: dict(type='VPTViT', prompt_form='reference'),
        vpt_reference_macs),
    'vpt': Method('VPT-deep', lambda s: dict(type='VPTViT'), vpt_macs),
    'cvpt': Method('CVPT', lambda s: dict(type='CVPTViT'), cvpt_macs),
    'bpt': Method('BPT (VPT-deep, bilinear)', bpt_backbone, bpt_macs),
    'davpt': Method('DA-VPT (VPT-deep, guided)', davpt_backbone, davpt_macs),
}
PROMPT_METHODS = [key for key in METHODS if key != 'frozen']

DEFINITIONS = """\
Definitions
- methods: "VPT-deep (reference form)" runs every block on the whole
  sequence [cls, P, patches], as published; "VPT-deep" is VPTViT's default
  (prompt_form='auto'), the same outputs with the image tokens attending to
  the prompts as keys and values only (no prompt queries, no MLP on the
  prompts); "CVPT" at its defaults (cross-attention after self-attention,
  the blocks' own frozen weights); "BPT" is fast VPT-deep with BPT's
  bilinear prompts P_l = A_l B_l^T of rank min(50, D) (calibrated),
  "DA-VPT" fast VPT-deep with DA-VPT's guidance of the last layer
  (min(20, P) proxies, 150 classes; its two Proxy-Anchor losses join the
  train step's loss). In the fast form no prompt query is computed, so
  DA-VPT's mask (prompt queries see only the patches) has nothing to act
  on.
- train step: forward + backward of loss = sum of the means of the 4 output
  feature maps (layers 3, 6, 9, 12), gradients to the prompts only (the ViT
  is frozen and in eval mode, prompt dropout 0.1 active); no optimiser step.
- frozen ViT train step ("the floor every deep-prompt method pays"): the same
  loss with no prompts, backward from the loss to the token embeddings that
  enter block 1 (patch embedding + class token + position embedding, made a
  leaf that requires grad): the gradient through all 12 frozen blocks, no
  weight gradients. Layer-1 prompts of any deep-prompt method need exactly
  this backward pass.
- inference: forward in eval mode under torch.no_grad() (the cached prompt
  keys / values of CVPT and VPT-deep in place, as in deployment).
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
  ops not counted), per step of the whole batch; "FLOPs counted / formula"
  compares them with the multiply-add formulas of docs/performance.md.
- trainable: parameters with requires_grad (prompts)."""
# The issues' targets: issue -> (size, P, metric, numerator, denominator,
# bound, strict). Issue 5 measured VPT-deep in its reference form.
TARGETS = {
    5: [
        (512, 200, 'train_ms', 'cvpt', 'vpt_reference', 0.95, False),
        (224, 200, 'train_ms', 'cvpt', 'vpt_reference', 0.65, False),
        (224, 10, 'train_ms', 'cvpt', 'frozen', 1.10, False),
        (224, 10, 'infer_ms', 'cvpt', 'frozen', 1.05, False),
        (512, 200, 'infer_ms', 'cvpt', 'frozen', 1.25, False),
        (224, 200, 'train_peak_mib', 'cvpt', 'vpt_reference', 1.0, True),
        (512, 200, 'train_peak_mib', 'cvpt', 'vpt_reference', 1.0, True),
    ],
    15: [
        (224, 200, 'train_ms', 'vpt', 'vpt_reference', 0.60, False),
        (224, 200, 'train_ms', 'vpt', 'cvpt', 1.0, False),
        (512, 200, 'train_ms', 'vpt', 'vpt_reference', 0.95, False),
        (224, 200, 'train_peak_mib', 'vpt', 'vpt_reference', 1.0, True),
        (512, 200, 'train_peak_mib', 'vpt', 'vpt_reference', 1.0, True),
    ],
}


@dataclass(frozen=True)
class Config:
    size: int
    method: str  # a key of METHODS
    prompts: int

    @property
    def label(self) -> str:
        return f'{self.size}px {METHODS[self.method].label} P={self.prompts}'


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
        description='Time / memory / FLOPs of frozen ViT-B/16 and prompt '
        'methods against the number of prompts.',
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


def configs_of(size: int, prompt_counts: List[int],
               methods: List[str] = PROMPT_METHODS) -> List[Config]:
    """The frozen ViT (always: it is the reference) and the methods at
    P > 0."""
    configs = [Config(size, 'frozen', 0)]
    for prompts in sorted(set(prompt_counts) - {0}):
        configs += [Config(size, method, prompts) for method in methods]
    return configs


# ---- models -----------------------------------------------------------------
def build(config: Config, arch: dict) -> nn.Module:
    """The backbone, in the state its method trains in: BPT's provider
    calibrated (on identity statistics: the cost does not depend on them),
    DA-VPT's ADE20K classes mapped onto its proxies."""
    shape = shape_of(arch, config.size, config.prompts, batch=1)
    model = MODELS.build(
        dict(METHODS[config.method].backbone(shape), img_size=config.size,
             num_prompts=config.prompts, **arch))
    if hasattr(model.prompts, 'set_statistics'):
        dims = arch['embed_dims']
        model.prompts.set_statistics(
            torch.eye(dims).repeat(arch['num_layers'], 1, 1))
    if model.guidance is not None:  # as ClassProxyHook does, before any
        model.guidance.initialise(DAVPT_CLASSES)  # class means exist
        model.guidance.recluster()
    return model


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
                arch: dict = VIT_B16,
                methods: List[str] = PROMPT_METHODS) -> List[Case]:
    torch.manual_seed(0)
    reference = build(Config(size, 'frozen', 0), arch).to(device)
    cases = []
    for config in configs_of(size, prompt_counts, methods):
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
    if model.guidance is not None:  # DA-VPT: image i of class i
        labels = torch.arange(len(images), device=images.device)
        loss = loss + sum(model.guidance_losses(labels).values())
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


def formula_gflops(config: Config, arch: dict, batch: int) -> dict:
    """The multiply-add formulas' FLOPs (2 a multiply-add), in GFLOPs."""
    train, infer = METHODS[config.method].macs(
        shape_of(arch, config.size, config.prompts, batch))
    return dict(train_gflops_formula=2 * train / 1e9,
                infer_gflops_formula=2 * infer / 1e9)


def measure_size(size: int, prompt_counts: List[int], args,
                 raw: List[dict]) -> List[dict]:
    """All configurations of one input size: one row each."""
    cases = build_cases(size, prompt_counts, args.device,
                        methods=args.methods)
    images = torch.randn(args.batch, 3, size, size, device=args.device)
    rows = {}
    for case in cases:  # warm-up, FLOPs and memory, untimed
        rows[case.config] = dict(
            size=size,
            method=METHODS[case.config.method].label,
            prompts=case.config.prompts,
            **untimed_costs(case, images),
            **formula_gflops(case.config, VIT_B16, args.batch))
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
                raw.append(dict(size=size,
                                method=METHODS[case.config.method].label,
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


def check_targets(rows: List[dict], raw: List[dict], issue: int) -> List[str]:
    """The issue's targets that this run measured: ratio of the medians
    (the target's measure) and, as a check on noise, the median of the
    ratios within each round."""
    by_key = {(r['size'], r['method'], r['prompts']): r for r in rows}
    lines = []
    for size, prompts, metric, num, den, bound, strict in TARGETS[issue]:
        num_label, den_label = METHODS[num].label, METHODS[den].label
        num_key = (size, num_label, prompts)
        den_key = (size, den_label, 0 if den == 'frozen' else prompts)
        if num_key not in by_key or den_key not in by_key:
            continue
        ratio = by_key[num_key][metric] / by_key[den_key][metric]
        holds = ratio < bound if strict else ratio <= bound
        floor = ' (floor)' if (den, metric) == ('frozen', 'train_ms') else ''
        line = (f'- {size}x{size}, P={prompts}: {num_label} {metric} / '
                f'{den_label}{floor} = '
                f'{ratio:.3f} (target {"<" if strict else "<="} {bound}): '
                f'{"holds" if holds else "FAILS"}')
        if metric.endswith('_ms'):
            paired = paired_ratio(raw, num_key, den_key, metric[:-3])
            line += f'; per-round paired ratio {paired:.3f}'
        lines.append(line)
    return lines


def formula_agreement(rows: List[dict]) -> str:
    """Counted FLOPs against the multiply-add formulas, row by row."""
    lines = ['FLOPs counted / formula (docs/performance.md):', '',
             '| size | method | P | train | inference |',
             '|---|---|---|---|---|']
    for row in rows:
        lines.append(
            f"| {row['size']} | {row['method']} | {row['prompts']} | "
            f"{row['train_gflops'] / row['train_gflops_formula']:.4f} | "
            f"{row['infer_gflops'] / row['infer_gflops_formula']:.4f} |")
    return '\n'.join(lines)


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


def plot(rows: List[dict], path: Path) -> Optional[str]:
    """Cost against P, one row of panels per size; None, or why there is
    no plot."""
    plt = pyplot()
    if plt is None:
        return NO_MATPLOTLIB
    frozen_label = METHODS['frozen'].label
    labels = [method.label for key, method in METHODS.items()
              if key != 'frozen' and any(r['method'] == method.label
                                         for r in rows)]
    panels = [('train_ms', 'train step (ms)'), ('infer_ms', 'inference (ms)'),
              ('train_peak_mib', 'train peak memory (MiB)'),
              ('train_gflops', 'train GFLOPs')]
    sizes = sorted({r['size'] for r in rows})
    fig, axes = plt.subplots(len(sizes), len(panels),
                             figsize=(4 * len(panels), 3.2 * len(sizes)),
                             squeeze=False)
    for ax_row, size in zip(axes, sizes):
        frozen = next(r for r in rows if r['size'] == size
                      and r['method'] == frozen_label)
        for ax, (key, title) in zip(ax_row, panels):
            for label in labels:
                points = [frozen] + [r for r in rows if r['size'] == size
                                     and r['method'] == label]
                ax.plot([r['prompts'] for r in points],
                        [r[key] for r in points], marker='o', label=label)
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
    targets = [
        f'Targets of issue {issue}:\n'
        + ('\n'.join(check_targets(rows, raw, issue)) or '(none measured)')
        for issue in TARGETS
    ]
    note = plot(rows, args.out / 'benchmark.png')
    report = '\n\n'.join([
        f'Command: `{command}`',
        f'Machine: {machine()}; batch {args.batch}, device {args.device}, '
        f'{args.clock} clock',
        table,
        *targets,
        formula_agreement(rows),
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
