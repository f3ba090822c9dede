"""``benchmark.py --peers``: our LoRA against HF peft's LoRA on the same
timm ViT, in one run.

Both adapt timm's ``vit_base_patch16_224`` (random weights: time does not
depend on the values) with rank r = 8, alpha = 8 and no dropout, and do the
same multiply-adds: ours updates q and v (two rank-r updates, 4 r D per
token and block), peft's its ``target_modules=['qkv']``, the fused
projection (one rank-r update of all three, r D + 3 D r). The train step is
forward (the last block's tokens through the final norm), the mean as the
loss, backward and an SGD step of the LoRA tensors; inference is the
forward without gradients. Each round times every (implementation, step)
(the fastest of ``--best-of`` back to back), in an order rotated every
round; the table gives medians and our time over peft's (below 1: ours is
faster).

peft is an optional requirement (``pip install -r requirements/peers.txt``).
"""
import copy
import statistics
from functools import partial
from typing import Callable, Dict, List

import torch
from mmseg.registry import MODELS
from torch import nn

from meters import seconds

MODEL = 'vit_base_patch16_224'
RANK, ALPHA = 8, 8.


def import_peft():
    """peft, or an error that says how to install it."""
    try:
        import peft
    except ImportError as error:
        raise SystemExit(
            '--peers times HF peft\'s LoRA, which is not installed: pip '
            'install -r requirements/peers.txt') from error
    return peft


class PeftViT(nn.Module):
    """peft's LoRA on the timm model: its last block's tokens, normed."""

    def __init__(self, timm_model: nn.Module):
        super().__init__()
        peft = import_peft()
        config = peft.LoraConfig(r=RANK, lora_alpha=ALPHA,
                                 target_modules=['qkv'], lora_dropout=0.)
        self.model = peft.get_peft_model(timm_model, config)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.base_model.model.forward_features(images)


class OursViT(nn.Module):
    """Our ``LoRAViT`` on the same timm model (its final norm on)."""

    def __init__(self, timm_model: nn.Module, size: int):
        super().__init__()
        self.backbone = MODELS.build(dict(
            type='LoRAViT', _scope_='mmseg', rank=RANK, alpha=ALPHA,
            targets=('q', 'v'), final_norm=True,
            vit=dict(type='TimmViT', model_name=MODEL, img_size=size)))
        self.backbone.vit.model.load_state_dict(timm_model.state_dict())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        out, = self.backbone(images)
        return out


def build_pair(size: int, device: torch.device) -> Dict[str, nn.Module]:
    """Ours and peft's on one timm model's weights, both equal to the
    frozen model at the start (B = 0)."""
    import timm
    torch.manual_seed(0)
    timm_model = timm.create_model(MODEL, pretrained=False, num_classes=0,
                                   img_size=size)
    pair = {'ours (LoRAViT, q v)': OursViT(timm_model, size),
            'HF peft (qkv)': PeftViT(copy.deepcopy(timm_model))}
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        frozen = timm_model.eval().forward_features(images)[:, 1:]
        ours = pair['ours (LoRAViT, q v)'].eval()(images)
        theirs = pair['HF peft (qkv)'].eval()(images)[:, 1:]
    ours = ours.flatten(2).transpose(1, 2)
    for name, out in (('ours', ours), ('peft', theirs)):
        if (out - frozen).abs().max() > 1e-4:
            raise RuntimeError(f'{name} LoRA does not start as the frozen '
                               'model: the comparison would be unfair')
    return {name: model.to(device) for name, model in pair.items()}


def trainable(model: nn.Module) -> List[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def lora_train_step(model: nn.Module, optimizer, images) -> None:
    optimizer.zero_grad(set_to_none=True)
    model(images).mean().backward()
    optimizer.step()


def lora_infer(model: nn.Module, images) -> None:
    with torch.no_grad():
        model(images)


def measure(size: int, batch: int, repeats: int, best_of: int,
            device: torch.device, clock: str, max_others: float,
            log: Callable[[str], None] = print) -> List[dict]:
    """One row per implementation: median ms of a train step and of an
    inference pass over ``repeats`` interleaved rounds (in each, the
    fastest of ``best_of`` back to back), trainable parameters, and ours
    over peft's."""
    pair = build_pair(size, device)
    images = torch.randn(batch, 3, size, size, device=device)
    steps = {}
    for name, model in pair.items():
        model.train()
        optimizer = torch.optim.SGD(trainable(model), lr=1e-3)
        steps[name, 'train_ms'] = partial(lora_train_step, model, optimizer,
                                          images)
        steps[name, 'infer_ms'] = partial(lora_infer, model, images)
        for step in (steps[name, 'train_ms'], steps[name, 'infer_ms']):
            step()  # warm-up
    keys = list(steps)
    times: Dict[tuple, List[float]] = {key: [] for key in keys}
    for round_ in range(repeats):
        shift = round_ % len(keys)
        for key in keys[shift:] + keys[:shift]:
            elapsed = min(seconds(steps[key], device, clock, max_others)[0]
                          for _ in range(best_of))
            times[key].append(1e3 * elapsed)
        log(f'  round {round_ + 1}/{repeats} done')
    rows = [dict(implementation=name,
                 trainable=sum(p.numel() for p in trainable(model)),
                 train_ms=statistics.median(times[name, 'train_ms']),
                 infer_ms=statistics.median(times[name, 'infer_ms']))
            for name, model in pair.items()]
    ours, theirs = rows
    for row in rows:
        row['train_vs_peft'] = row['train_ms'] / theirs['train_ms']
        row['infer_vs_peft'] = row['infer_ms'] / theirs['infer_ms']
    return rows


def table(rows: List[dict], command: str, setting: str) -> str:
    """The rows as a markdown table, with the command that measured
    them."""
    lines = [f'`{command}`', '', setting, '',
             '| implementation | trainable | train step ms | inference ms | '
             'train vs peft | inference vs peft |',
             '| --- | ---: | ---: | ---: | ---: | ---: |']
    lines += [f'| {r["implementation"]} | {r["trainable"]:,} | '
              f'{r["train_ms"]:.1f} | {r["infer_ms"]:.1f} | '
              f'{r["train_vs_peft"]:.3f}x | {r["infer_vs_peft"]:.3f}x |'
              for r in rows]
    return '\n'.join(lines)
