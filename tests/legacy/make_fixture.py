"""Write the legacy fixture: what the code of one commit makes of each demo
method, for tests/test_legacy.py to compare later code against.

For each demo config (``configs/METHOD/upernet_vittiny_ade20k_demo.py``)
the model is built with the shipped pretrained ViT, every trainable tensor
and every floating buffer outside the frozen ViT is set to seeded random
values (so that prompts, heads, whitening and proxies all matter), and
``METHOD.pth`` stores its full state dict, two input images and, in eval
mode, the backbone's feature maps and the decode head's logits. ``runner/``
holds a 2-iteration CVPT demo training (tuned-only runner checkpoint with
optimiser, scheduler and message-hub state) for the resume test.

Run from the repository root of the commit to record (the fixture in
tests/legacy/ was written at 3af09e5)::

    python tests/legacy/make_fixture.py tests/legacy/3af09e5
"""
import argparse
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = ('cvpt', 'vpt', 'bpt', 'davpt', 'baseline')
SEED = 0


def demo_config(method: str) -> str:
    return osp.join(REPO, 'configs', method, 'upernet_vittiny_ade20k_demo.py')


def build(method: str):
    """The demo model of ``method`` with the shipped pretrained ViT."""
    import mmseg_cvpt  # noqa: F401
    from mmseg_cvpt.apis.task_package import build_model
    from mmseg_cvpt.engine import load_config
    model = build_model(load_config(demo_config(method)))
    model.init_weights()
    return model.eval()


def randomise_tuned(model, generator: torch.Generator) -> None:
    """Seeded random values for everything a method tunes or calibrates:
    trainable parameters (replaced) and the floating buffers outside the
    frozen ViT (shifted up, so that variances stay positive)."""
    backbone = model.backbone
    frozen = {'backbone.' + key for key in backbone.frozen_keys()}
    buffers = {k: v for k, v in model.named_buffers()
               if v.is_floating_point() and k not in frozen}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.copy_(torch.randn(param.shape, generator=generator) *
                            0.1)
        for name, buffer in sorted(buffers.items()):  # e.g. BN statistics
            noise = torch.randn(buffer.shape, generator=generator).abs()
            buffer.add_(0.1 * noise.to(buffer.dtype))


def outputs(model, images: torch.Tensor) -> dict:
    with torch.no_grad():
        features = model.backbone(images)
        logits = model._forward(images)
    return dict(features=[f.clone() for f in features], logits=logits)


def write_method(method: str, out_dir: str) -> None:
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    model = build(method)
    randomise_tuned(model, generator)
    if hasattr(model.backbone.prompts, 'set_statistics'):  # BPT
        dims = model.backbone.cls_token.shape[-1]
        factors = torch.randn(model.backbone.prompt_depth, dims, dims,
                              generator=generator, dtype=torch.float64)
        model.backbone.prompts.set_statistics(
            factors @ factors.mT / dims + torch.eye(dims, dtype=torch.float64))
    images = torch.randn(2, 3, 64, 64, generator=generator)
    torch.save(dict(state_dict=model.state_dict(), images=images,
                    **outputs(model, images)),
               osp.join(out_dir, f'{method}.pth'))


def write_runner_checkpoint(out_dir: str) -> None:
    """A 2-iteration CVPT demo training's runner checkpoint."""
    with tempfile.TemporaryDirectory() as tmp:
        data = osp.join(tmp, 'data')
        subprocess.run([sys.executable, 'tools/misc/make_ade20k_demo.py',
                        data, '--num-train', '4', '--num-val', '2'],
                       cwd=REPO, check=True)
        options = [f'{loader}.{key}' for loader in
                   ('train_dataloader', 'val_dataloader', 'test_dataloader')
                   for key in (f'dataset.data_root={data}', 'num_workers=0',
                               'persistent_workers=False')]
        options += ['train_dataloader.batch_size=2', 'train_cfg.max_iters=2',
                    'train_cfg.val_interval=2',
                    'default_hooks.checkpoint.interval=2']
        work_dir = osp.join(tmp, 'work')
        subprocess.run([sys.executable, 'tools/train.py', demo_config('cvpt'),
                        '--work-dir', work_dir, '--cfg-options', *options],
                       cwd=REPO, check=True,
                       env=dict(os.environ, OMP_NUM_THREADS='1'))
        os.makedirs(osp.join(out_dir, 'runner'), exist_ok=True)
        shutil.copy(osp.join(work_dir, 'iter_2.pth'),
                    osp.join(out_dir, 'runner', 'iter_2.pth'))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('out_dir')
    args = parser.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    os.chdir(REPO)  # the configs' relative pretrained path
    for method in METHODS:
        write_method(method, args.out_dir)
    write_runner_checkpoint(args.out_dir)


if __name__ == '__main__':
    main()
