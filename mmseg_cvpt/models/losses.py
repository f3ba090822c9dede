"""Proxy-Anchor loss (Kim et al., CVPR 2020), as DA-VPT uses it."""
import torch
import torch.nn.functional as F
from torch import Tensor


def positives_of(labels: Tensor, num_proxies: int) -> Tensor:
    """(B,) proxy indices or a (B, k) boolean matrix -> (B, k) booleans."""
    if labels.dtype == torch.bool:
        if labels.dim() != 2 or labels.shape[1] != num_proxies:
            raise ValueError(
                f'multi-hot labels must be (B, {num_proxies}) booleans, got '
                f'{tuple(labels.shape)}')
        return labels
    if labels.dim() != 1:
        raise ValueError('labels must be (B,) proxy indices or a (B, k) '
                         f'boolean matrix, got shape {tuple(labels.shape)}')
    if labels.numel() and not 0 <= int(labels.min()) <= int(
            labels.max()) < num_proxies:
        raise ValueError(f'proxy indices must lie in [0, {num_proxies}), got '
                         f'{labels.min().item()}..{labels.max().item()}')
    return F.one_hot(labels, num_proxies).bool()


def log1p_sum_exp(logits: Tensor, mask: Tensor) -> Tensor:
    """log(1 + sum over the masked rows of exp(logits)), per column, stable:
    softplus(logsumexp); 0 for a column without masked rows."""
    masked = logits.masked_fill(~mask, float('-inf'))
    return F.softplus(torch.logsumexp(masked, dim=0))


def proxy_anchor_loss(features: Tensor,
                      proxies: Tensor,
                      labels: Tensor,
                      alpha: float = 32.,
                      margin: float = 0.1) -> Tensor:
    """Proxy-Anchor loss with cosine similarities s(x, p):

        L = 1/|P+| sum_{p in P+} log(1 + sum_{x in X_p+} exp(-alpha (s(x, p) - margin)))
          + 1/|P|  sum_{p in P}  log(1 + sum_{x in X_p-} exp( alpha (s(x, p) + margin)))

    P+ the proxies with at least one positive in the batch (the positive
    term is 0 when there is none), X_p+ / X_p- the batch's positives /
    negatives of proxy p.

    Args:
        features (Tensor): (B, D).
        proxies (Tensor): (k, D).
        labels (Tensor): (B,) proxy indices, or a (B, k) boolean matrix (an
            image may be positive for several proxies).
        alpha (float): scale. Default 32.
        margin (float): delta. Default 0.1.
    """
    dtype = torch.promote_types(features.dtype, torch.float32)
    with torch.autocast(features.device.type, enabled=False):  # >= float32
        similarity = F.normalize(features.to(dtype), dim=-1) @ F.normalize(
            proxies.to(dtype), dim=-1).T
    positive = positives_of(labels, proxies.shape[0])
    pos_terms = log1p_sum_exp(-alpha * (similarity - margin), positive)
    neg_terms = log1p_sum_exp(alpha * (similarity + margin), ~positive)
    # a proxy without positives adds a zero term, and is not counted
    pos_loss = pos_terms.sum() / positive.any(0).sum().clamp(min=1)
    return pos_loss + neg_terms.mean()
