"""VPT: prompts inserted into the token sequence (Jia et al., ECCV 2022)."""
from typing import List, Tuple

import torch
from mmseg.models.backbones.vit import TransformerEncoderLayer
from mmseg.registry import MODELS
from torch import Tensor

from .prompted_vit import PromptedVisionTransformer, vit_block


@MODELS.register_module()
class VPTViT(PromptedVisionTransformer):
    """Visual Prompt Tuning of a frozen mmseg ViT.

    The m prompts of layer i enter the sequence right after the class token
    and replace the previous layer's prompt outputs (no position embedding):

        x_0 = [cls, P_0, patches],  x_i = [x_{i-1}[:1], P_i, x_{i-1}[1 + m:]]

    With ``prompt_depth='shallow'`` only P_0 is inserted and its outputs
    travel through all later layers.

    Args:
        prompt_cfg (dict): defaults to VPT's uniform init,
            ``dict(type='LayerPrompts', init='uniform')``.
        See ``PromptedVisionTransformer`` for the other arguments.
    """

    default_prompt_cfg = dict(type='LayerPrompts', init='uniform')

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.freeze_pretrained()

    def forward_layer(self, index: int, layer: TransformerEncoderLayer,
                      x: Tensor, prompts: List[Tensor]) -> Tensor:
        if index < len(prompts):
            num_prefix = int(self.with_cls_token)
            num_old = self.num_prompts if index > 0 else 0
            new = prompts[index].expand(x.shape[0], -1, -1)
            x = torch.cat(
                (x[:, :num_prefix], new, x[:, num_prefix + num_old:]), dim=1)
        return vit_block(layer, x)

    def block_without_prompts(self, index: int,
                              layer: TransformerEncoderLayer,
                              x: Tensor) -> Tuple[Tensor, Tensor]:
        """The prompts are keys of the self-attention, queried by LN1(x)."""
        return layer.norm1(x), vit_block(layer, x)
