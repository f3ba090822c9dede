"""Turn a checkpoint into a task package, or a task package into a full
checkpoint.

A task package holds the tuned tensors (prompts, heads, method buffers), the
config and the fingerprint of the frozen ViT with the path of its base
checkpoint; every loader (our tools, mmseg's and mmpretrain's APIs and
inferencers, ``load_checkpoint``) restores the frozen ViT from the base.
``--full`` writes a standalone full checkpoint instead, for clients that
need every tensor in one file. ``--merge`` (LoRA) writes the full
checkpoint with the low-rank updates merged into the frozen weights and, on
mmseg's ViT, a config for stock mmseg beside it (FILE.py): served without
mmseg_cvpt, at the frozen ViT's cost. See docs/task_packages.md.

Examples::

    python tools/export_task.py work_dirs/cvpt/iter_160000.pth --out ade.pth
    python tools/export_task.py ade.pth --full --out ade_full.pth
    # LoRA, merged: stock mmseg's tools/test.py ade_lora.py ade_lora.pth
    python tools/export_task.py lora/iter_160000.pth --merge \
        --out ade_lora.pth
    # safetensors: no pickle, meta as JSON in the header (by the suffix)
    python tools/export_task.py ade.pth --out ade.safetensors
    # a checkpoint whose frozen weights come from no file (the demo): write
    # them once as the base checkpoint
    python tools/export_task.py work_dirs/demo/iter_300.pth --out demo.pth \
        --base-checkpoint work_dirs/demo/frozen_base.pth
"""
import argparse
import os.path as osp
import warnings

from mmseg_cvpt.apis import export_merged, export_task
from mmseg_cvpt.engine.cli import add_debug_argument, run_tool

# mmengine re-imports the deprecated pkg_resources for every `pkg::` base
warnings.filterwarnings('ignore', message='pkg_resources is deprecated')


def parse_args():
    parser = argparse.ArgumentParser(
        description='Export a task package (or a full checkpoint)')
    parser.add_argument(
        'checkpoint',
        help='a checkpoint of ours: runner checkpoint (full or tuned-only), '
        'task package or plain state dict')
    parser.add_argument(
        '--out',
        required=True,
        help='the file to write; a safetensors file if it ends in '
        '.safetensors, else torch.save')
    parser.add_argument(
        '--full',
        action='store_true',
        help='write a full checkpoint (frozen ViT included)')
    parser.add_argument(
        '--merge',
        action='store_true',
        help='LoRA: write the full checkpoint with the updates merged into '
        "the frozen weights, and a stock mmseg config beside it (on mmseg's "
        'ViT)')
    parser.add_argument(
        '--config',
        help='the config of a checkpoint that holds none (plain state dicts)')
    parser.add_argument(
        '--base-checkpoint',
        help='the base checkpoint when it is not at the recorded path; for a '
        'full checkpoint without a known base, the base to record (a missing '
        'file is written with the frozen weights)')
    add_debug_argument(parser)
    args = parser.parse_args()
    if not osp.isfile(args.checkpoint):
        parser.error(f'{args.checkpoint}: no such file')
    if args.merge and args.full:
        parser.error('--merge writes a full checkpoint: leave --full out')
    return args


def main():
    args = parse_args()
    if args.merge:
        package, config = export_merged(args.checkpoint, args.out,
                                        args.config)
        print(f'{args.out}: merged full checkpoint, '
              f'{len(package["state_dict"])} tensors, no LoRA tensors' +
              (f'; stock mmseg config {config}' if config else ''))
        return
    package = export_task(args.checkpoint, args.out, args.config, args.full,
                          args.base_checkpoint)
    info = package['meta']['task_package']
    kind = 'full checkpoint' if args.full else 'task package'
    print(f'{args.out}: {kind}, {len(package["state_dict"])} tensors, '
          f'{osp.getsize(args.out):,} bytes; base checkpoint '
          f'{info["base_checkpoint"]} (fingerprint {info["fingerprint"]})')


if __name__ == '__main__':
    run_tool(main)
