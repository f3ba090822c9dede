"""The methods: one registry that the tools and the tests read.

A method is its backbone class (a ``FrozenViTBackbone`` subclass registered
in mmseg's ``MODELS``), its configs (``configs/<folder>/<prefix><setting>.py``
for each setting, e.g. ``upernet_vittiny_ade20k_demo.py``) and one entry
here, :func:`register_method`. ``tools/analysis/compare_methods.py`` trains
every registered method, ``benchmark.py`` times those with a cost formula,
``count_params.py`` names the method of a config, and the tests run each
one.
"""
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

from .models.backbones.adaptformer_vit import adaptformer_macs
from .models.backbones.cvpt_vit import cvpt_macs
from .models.backbones.lora_vit import lora_macs
from .models.backbones.rein_vit import rein_macs
from .models.backbones.vpt_vit import vpt_macs
from .models.costs import Shape
from .models.guidance import proxy_guidance_macs
from .models.prompts import bilinear_prompts_macs

#: (train step, inference) multiply-adds of a method at a shape
CostFormula = Callable[[Shape], Tuple[int, int]]


@dataclass(frozen=True)
class Published:
    """A method's trainable parameter count as its paper gives it
    (``shown``, e.g. '2.99 M', worth ``trainable``), for a backbone of
    ``embed_dims`` and ``depth``; ``source`` names the paper and setting."""

    trainable: int
    shown: str
    embed_dims: int
    depth: int
    source: str


@dataclass(frozen=True)
class Method:
    """A method: ``name`` (its key, as tools take it), ``label`` (as tables
    print it), ``backbone`` (its registered backbone class), where its
    configs are (``folder`` and the file-name ``prefix``), whether it has
    prompts (``uses_prompts``: compare_methods.py runs it once per P),
    and its ``cost`` formula (None where it has none of its own), with
    ``cost_backbone``, the backbone config the formula describes (by
    default ``dict(type=backbone)``), and ``cost_detail``, the settings the
    formula assumes (printed beside the label); ``published``, the
    trainable counts its paper gives (tools/analysis/count_params.py
    prints ours beside them)."""

    name: str
    label: str
    backbone: str
    folder: str
    prefix: str = ''
    uses_prompts: bool = True
    cost: Optional[CostFormula] = None
    cost_backbone: Optional[Callable[[Shape], dict]] = None
    cost_detail: str = ''
    published: Tuple[Published, ...] = ()

    def config(self, setting: str) -> str:
        """The method's config for ``setting`` (a file name), relative to
        the configs folder."""
        return f'{self.folder}/{self.prefix}{setting}'

    def backbone_for(self, shape: Shape) -> dict:
        """The backbone config (less the architecture) that ``cost``
        describes."""
        if self.cost_backbone is not None:
            return self.cost_backbone(shape)
        return dict(type=self.backbone)

    @property
    def cost_label(self) -> str:
        return f'{self.label} ({self.cost_detail})' if self.cost_detail \
            else self.label


#: name -> Method, in the order tables list them
METHODS: Dict[str, Method] = {}


def register_method(method: Method, force: bool = False) -> Method:
    """Add ``method`` to :data:`METHODS` (``force``: replace one of its
    name)."""
    if method.name in METHODS and not force:
        raise KeyError(f'a method named {method.name!r} is registered '
                       'already: choose another name, or force=True')
    METHODS[method.name] = method
    return method


def method_of_config(config: str) -> Optional[Method]:
    """The registered method whose config ``config`` is: the one of its
    folder with the longest name prefix that the file name starts with, or
    None."""
    folder, name = osp.basename(osp.dirname(config)), osp.basename(config)
    found = [method for method in METHODS.values()
             if method.folder == folder and name.startswith(method.prefix)]
    return max(found, key=lambda method: len(method.prefix), default=None)


# ---- BPT and DA-VPT: fast VPT-deep with a prompt provider / an add-on -------
BPT_RANK = 50  # p of BPT's bilinear prompts (configs/bpt: m = p = 50)
DAVPT_PROXIES = 20  # k of DA-VPT (configs/davpt), at most P
DAVPT_CLASSES = 150  # C: ADE20K's classes, mapped onto the k proxies


def bpt_rank(s: Shape) -> int:
    return min(BPT_RANK, s.dims)


def davpt_proxies(s: Shape) -> int:
    return min(DAVPT_PROXIES, s.prompts)


def bpt_macs(s: Shape) -> Tuple[int, int]:
    """Fast VPT-deep with bilinear prompts (inference computes the product,
    then finds the prompts' keys and values cached)."""
    train, infer = vpt_macs(s)
    product_train, product_infer = bilinear_prompts_macs(s, bpt_rank(s))
    return train + product_train, infer + product_infer


def davpt_macs(s: Shape) -> Tuple[int, int]:
    """Fast VPT-deep with DA-VPT's guidance of the last layer."""
    train, infer = vpt_macs(s)
    guidance = proxy_guidance_macs(s, davpt_proxies(s), DAVPT_CLASSES)
    return train + guidance, infer


def bpt_backbone(s: Shape) -> dict:
    return dict(type='VPTViT', prompt_cfg=dict(type='BilinearPrompts',
                                               rank=bpt_rank(s)))


def davpt_backbone(s: Shape) -> dict:
    return dict(type='VPTViT', addons=dict(guidance=dict(
        type='ProxyGuidance', num_guided=davpt_proxies(s))))


#: the methods this package brings
BUILT_IN = (
    Method('baseline', 'head-only', 'VPTViT', 'baseline',
           uses_prompts=False),
    Method('bias', 'Bias', 'VPTViT', 'bias', uses_prompts=False),
    Method('vpt', 'VPT-deep', 'VPTViT', 'vpt', cost=vpt_macs),
    Method('vpt_bias', 'VPT+Bias', 'VPTViT', 'bias', prefix='vpt_'),
    Method('cvpt', 'CVPT', 'CVPTViT', 'cvpt', cost=cvpt_macs),
    Method('bpt', 'BPT', 'VPTViT', 'bpt', cost=bpt_macs,
           cost_backbone=bpt_backbone, cost_detail='VPT-deep, bilinear'),
    Method('davpt', 'DA-VPT', 'VPTViT', 'davpt', cost=davpt_macs,
           cost_backbone=davpt_backbone, cost_detail='VPT-deep, guided'),
    Method('lora', 'LoRA', 'LoRAViT', 'lora', uses_prompts=False,
           cost=lora_macs, cost_detail='q, v; r = 8'),
    Method('adaptformer', 'AdaptFormer', 'AdaptFormerViT',
           'adaptformer', uses_prompts=False, cost=adaptformer_macs,
           cost_detail='b = 64'),
    Method('rein', 'Rein', 'ReinViT', 'rein', uses_prompts=False,
           cost=rein_macs, cost_detail='m = 100, r = 16',
           published=(Published(
               2_990_000, '2.99 M', 1024, 24,
               'Rein (CVPR 2024), DINOv2-L with Mask2Former, tokens linked '
               'to the queries'), )),
    Method('full', 'full fine-tuning', 'VPTViT', 'baseline',
           prefix='full_', uses_prompts=False),
)
for method in BUILT_IN:
    register_method(method)
