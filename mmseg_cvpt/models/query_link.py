"""Rein's link of its tokens to Mask2Former's queries (w1oves/Rein
``rein/models/heads/rein_mask2former.py``), under any neck.

``QueryLinkedEncoderDecoder`` gives its decode head the backbone's query
embeddings Q (m x C, ``backbone.query_embeddings()``: e.g.
``ReinViT(link_token_to_query=True)``) beside the neck's features, and
``ReinMask2FormerHead`` uses them where Mask2Former keeps learned ones:

    query_pos = Q                                  (every decoder layer)
    query_0   = Q W_f^T + b_f   (replace_query_feat=True)
              | Mask2Former's learned query features (otherwise)
"""
from typing import Optional, Sequence, Tuple

from mmseg.models import EncoderDecoder
from mmseg.models.decode_heads import Mask2FormerHead
from mmseg.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class QueryLinkedEncoderDecoder(EncoderDecoder):
    """``EncoderDecoder`` whose decode head gets ``(features, Q)``: the
    neck's features and the backbone's query embeddings. Auxiliary heads
    get the features alone."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        if not callable(getattr(self.backbone, 'query_embeddings', None)):
            raise TypeError(
                f'QueryLinkedEncoderDecoder: {type(self.backbone).__name__} '
                'makes no query embeddings; use a backbone that does '
                "(type='ReinViT', link_token_to_query=True) or the plain "
                "EncoderDecoder")

    def extract_feat(self, inputs: Tensor) -> Tuple[Sequence[Tensor], Tensor]:
        return super().extract_feat(inputs), self.backbone.query_embeddings()

    def _auxiliary_head_forward_train(self, inputs, data_samples) -> dict:
        features, _ = inputs
        return super()._auxiliary_head_forward_train(features, data_samples)


class LinkedQueries(nn.Module):
    """Stands where Mask2Former keeps an ``nn.Embedding`` of its queries:
    ``weight`` is the tensor linked for the current forward (no
    parameters)."""

    def __init__(self):
        super().__init__()
        self.weight: Optional[Tensor] = None


@MODELS.register_module()
class ReinMask2FormerHead(Mask2FormerHead):
    """mmseg's ``Mask2FormerHead`` on ``(features, Q)`` (see the module
    docstring): Q, m x C (m = ``num_queries``, C = ``feat_channels``), is
    the queries' positional embedding and, with ``replace_query_feat``,
    through a linear map (``query_feat_proj``), their initial features.

    Args:
        replace_query_feat (bool): make the initial query features from Q
            too. Default False.
        See mmseg's ``Mask2FormerHead`` for the other arguments.
    """

    def __init__(self, replace_query_feat: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.replace_query_feat = replace_query_feat
        self.query_channels = kwargs['feat_channels']
        self.query_embed = LinkedQueries()
        if replace_query_feat:
            self.query_feat = LinkedQueries()
            self.query_feat_proj = nn.Linear(self.query_channels,
                                             self.query_channels)  # W_f, b_f

    def forward(self, x, batch_data_samples):
        features, queries = x
        expected = (self.num_queries, self.query_channels)
        if tuple(queries.shape) != expected:
            raise ValueError(
                'ReinMask2FormerHead: the backbone gives query embeddings of '
                f'shape {tuple(queries.shape)}, the head takes {expected} '
                '(num_queries, feat_channels): set num_queries to the '
                "backbone's tokens (ReinViT num_tokens) and its query_dims "
                'to feat_channels')
        self.query_embed.weight = queries
        if self.replace_query_feat:
            self.query_feat.weight = self.query_feat_proj(queries)
        try:
            return super().forward(features, batch_data_samples)
        finally:  # no graph kept between forwards
            self.query_embed.weight = None
            if self.replace_query_feat:
                self.query_feat.weight = None
