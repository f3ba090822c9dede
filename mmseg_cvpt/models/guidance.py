"""DA-VPT: prompts guided by metric learning to act as class proxies
(Distribution-Aware Visual Prompt Tuning, CVPR 2025).

In each guided layer l the first k prompts P_l (k x D) are proxies of groups
of classes. With X the mean patch token of the layer's input and x_cls the
class token's query vector there (VPT: W_q LN1(x)_cls + b_q; CVPT: the
cross-attention's query of the class token), both L2-normalised:

    loss_guidance_patch = beta   * mean_l L_PA(X, P_l)
    loss_guidance_cls   = lambda * mean_l L_PA(x_cls, P_l)

with L_PA the Proxy-Anchor loss (``losses.proxy_anchor_loss``) and an image
positive for the proxies of its classes. Classes are grouped into k proxies
by cosine k-means of their mean features (X averaged over the guided layers)
— first from the frozen model without prompts, then every epoch (or N
iterations) from the class means the training forward accumulates, warm
started from the previous centroids (``ClassProxyHook``). With C <= k
classes, class c is proxy c.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from mmseg.registry import MODELS
from torch import Tensor, nn

from .attention import queries_of
from .families import Tokens
from .costs import Shape
from .flags import register_flag, set_flag
from .losses import proxy_anchor_loss

KMEANS_ITERATIONS = 20


def cosine_kmeans(points: Tensor, centroids: Tensor,
                  iterations: int = KMEANS_ITERATIONS
                  ) -> Tuple[Tensor, Tensor]:
    """Spherical k-means of unit rows ``points`` (n, D) from ``centroids``
    (k, D): assign each point to its most similar centroid, move each
    centroid to the normalised mean of its points (an empty cluster keeps
    its centroid). Returns (assignment (n,), centroids)."""
    for _ in range(iterations):
        assignment = (points @ centroids.T).argmax(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        filled = sums.norm(dim=1) > 0
        centroids = torch.where(filled[:, None], F.normalize(sums, dim=1),
                                centroids)
    return (points @ centroids.T).argmax(1), centroids


def farthest_points(points: Tensor, count: int) -> Tensor:
    """Deterministic k-means seeds: the first point, then repeatedly the
    point least similar to the seeds chosen so far (``count`` <= n)."""
    chosen = [0]
    nearest = points @ points[0]
    for _ in range(count - 1):
        chosen.append(int(nearest.argmin()))
        nearest = torch.maximum(nearest, points @ points[chosen[-1]])
    return points[chosen]


def resolve_layers(layers: Sequence[int], num_layers: int,
                   num_prompted: int) -> List[int]:
    resolved = []
    for layer in layers:
        index = layer + num_layers if layer < 0 else layer
        if not 0 <= index < num_layers:
            raise ValueError(f'guided layer {layer} is outside the model\'s '
                             f'{num_layers} layers')
        if index >= num_prompted:
            raise ValueError(f'guided layer {layer} has no prompts (only the '
                             f'first {num_prompted} layers are prompted)')
        resolved.append(index)
    if not resolved or len(set(resolved)) != len(resolved):
        raise ValueError(f'guided layers must be distinct, got {layers!r}')
    return sorted(resolved)


@MODELS.register_module()
class ProxyGuidance(nn.Module):
    """DA-VPT's guidance: an add-on of a prompted backbone
    (``addons=dict(guidance=dict(type='ProxyGuidance', ...))``).

    In a training forward it records, at each guided layer, the mean patch
    token of the layer input (``layer_input``) and the class token's query
    (``prompt_queries``: W_q u_cls + b_q of the attention that meets the
    prompts), with the forward's prompts (``forward_start``); ``losses``
    turns them into the two Proxy-Anchor losses.

    The class-to-proxy mapping, the centroids and the running class sums are
    buffers: they are saved in checkpoints and restored on resume. Their
    class dimension C is set by ``initialise`` (from the data) or by the
    checkpoint they are loaded from.

    Args:
        layers (Sequence[int]): guided layers (negative: from the end).
            Default (-1,), the last layer.
        num_guided (int): k, the prompts of each guided layer that act as
            proxies (<= num_prompts). Default 10.
        beta (float): weight of the patch term. Default 0.01 (the paper's
            VTAB value; 0.05 on CUB).
        lambda_ (float): weight of the class-token term. Default 0.01.
        alpha (float): Proxy-Anchor scale. Default 32.
        margin (float): Proxy-Anchor margin. Default 0.1.
        proxy_scale (float, optional): the reference code's extra scale of
            the normalised proxies (5 there: an effective alpha of 160).
            Default None (off).
        num_layers, num_prompted, num_prompts, embed_dims,
        num_prefix_tokens: filled in by the backbone.
    """

    def __init__(self,
                 num_layers: int,
                 num_prompted: int,
                 num_prompts: int,
                 embed_dims: int,
                 num_prefix_tokens: int,
                 layers: Sequence[int] = (-1, ),
                 num_guided: int = 10,
                 beta: float = 0.01,
                 lambda_: float = 0.01,
                 alpha: float = 32.,
                 margin: float = 0.1,
                 proxy_scale: Optional[float] = None):
        super().__init__()
        if num_prompts == 0:
            raise ValueError('ProxyGuidance needs prompts: num_prompts is 0')
        if num_prefix_tokens < 1:
            raise ValueError('ProxyGuidance needs the class token '
                             '(with_cls_token=True)')
        if (isinstance(num_guided, bool) or not isinstance(num_guided, int)
                or not 1 <= num_guided <= num_prompts):
            raise ValueError(
                f'num_guided (k, the proxies per guided layer) must be an '
                f'integer in [1, num_prompts={num_prompts}], got '
                f'{num_guided!r}')
        self.layers = resolve_layers(layers, num_layers, num_prompted)
        self.num_guided = num_guided
        self.beta, self.lambda_ = beta, lambda_
        self.alpha = alpha * (proxy_scale or 1.)
        self.margin = margin
        register_flag(self, 'mapped', 'is_mapped')
        self.register_buffer('class_to_proxy', torch.zeros(0,
                                                           dtype=torch.long))
        self.register_buffer('centroids', torch.zeros(num_guided, embed_dims))
        self.register_buffer('class_sums', torch.zeros(0, embed_dims))
        self.register_buffer('class_counts', torch.zeros(0))
        # layer index -> what the last training forward showed at that layer
        self.records: Dict[int, Dict[str, Tensor]] = {}
        self.proxies: Optional[Tensor] = None

    # ---- what a training forward shows --------------------------------------
    def forward_start(self, prompts: Optional[Tensor]) -> None:
        """A forward starts with ``prompts`` (L, m, D): record in training."""
        self.records = {i: {} for i in self.layers} if self.training else {}
        self.proxies = prompts[:, :self.num_guided] if self.training else None

    def layer_input(self, index: int, tokens: Tokens) -> None:
        """X of a guided layer: the mean patch token of its input."""
        if index in self.records:
            self.records[index]['patch_mean'] = tokens.patches.mean(1)

    def prompt_queries(self, index: int, queries: Tensor,
                       attention: nn.Module) -> None:
        """x_cls of a guided layer: the class token's query vector."""
        if index in self.records:
            self.records[index]['class_query'] = queries_of(
                attention, queries[:, 0], rotate=False)

    #: buffers whose class dimension comes from the checkpoint loaded
    checkpoint_sized_buffers = ('class_to_proxy', 'class_sums',
                                'class_counts')

    @property
    def num_classes(self) -> int:
        return self.class_to_proxy.numel()

    # ---- the losses ---------------------------------------------------------
    def proxy_labels(self, labels: Tensor) -> Tensor:
        """Class labels -> proxy labels: (B,) indices or (B, k) booleans."""
        if not self.is_mapped:
            raise RuntimeError(
                'the class-to-proxy mapping is not initialised: add '
                "dict(type='ClassProxyHook') to custom_hooks (or call "
                'initialise with class means)')
        if labels.dtype == torch.bool:
            groups = F.one_hot(self.class_to_proxy, self.num_guided)
            return (labels.float() @ groups.float()) > 0
        return self.class_to_proxy[labels]

    def losses(self, labels: Tensor) -> Dict[str, Tensor]:
        """The two guidance losses of the last training forward, for its
        images' ``labels``: (B,) class indices or (B, C) multi-hot
        booleans; also adds the patch features to the running class
        sums."""
        if not self.records:
            raise RuntimeError('guidance losses need a forward in train mode '
                               'first (they read that forward\'s tokens)')
        targets = self.proxy_labels(labels)
        patch_loss = cls_loss = 0.
        features = 0.
        for index in self.layers:
            record = self.records[index]
            patch_mean = record['patch_mean']
            proxies = self.proxies[index]
            patch_loss = patch_loss + proxy_anchor_loss(
                patch_mean, proxies, targets, self.alpha, self.margin)
            cls_loss = cls_loss + proxy_anchor_loss(
                record['class_query'], proxies, targets, self.alpha,
                self.margin)
            features = features + F.normalize(patch_mean.detach(), dim=-1)
        self.accumulate(features / len(self.layers), labels)
        return dict(
            loss_guidance_patch=self.beta * patch_loss / len(self.layers),
            loss_guidance_cls=self.lambda_ * cls_loss / len(self.layers))

    # ---- the class-to-proxy mapping -----------------------------------------
    def accumulate(self, features: Tensor, labels: Tensor) -> None:
        """Add unit ``features`` (B, D) to the sums of their classes."""
        if labels.dtype != torch.bool:
            labels = F.one_hot(labels, self.num_classes).bool()
        members = labels.to(features.dtype)
        self.class_sums += members.T @ features
        self.class_counts += members.sum(0)

    def prompt_free_features(self, backbone: nn.Module,
                             images: Tensor) -> Tensor:
        """Unit mean patch tokens at the guided layers of the frozen model
        without prompts, averaged over the layers: (B, D)."""
        features = 0.
        with backbone.evaluating():
            for index, tokens, _ in backbone.prompt_free_layers(images):
                if index in self.layers:
                    features = features + F.normalize(
                        tokens.patches.mean(1), dim=-1)
        return features / len(self.layers)

    def initialise(self, num_classes: int) -> None:
        """Size the class buffers for C classes and clear the sums."""
        self.class_to_proxy = torch.arange(
            num_classes, device=self.centroids.device) % self.num_guided
        self.class_sums = self.centroids.new_zeros(num_classes,
                                                   self.centroids.shape[1])
        self.class_counts = self.centroids.new_zeros(num_classes)
        set_flag(self, 'mapped', 'is_mapped', False)

    def recluster(self) -> Dict[str, object]:
        """Group the classes from the accumulated means (summed over ranks),
        warm-started from the centroids once mapped; then clear the sums.

        Classes without features keep their group. Returns what changed:
        ``moved`` (classes that changed proxy), ``unseen`` (classes
        without features) and ``num_classes``.
        """
        sums, counts = self.class_sums.clone(), self.class_counts.clone()
        all_reduce(sums)  # in place; nothing without a process group
        all_reduce(counts)
        seen = counts > 0
        old = self.class_to_proxy.clone()
        if self.num_classes <= self.num_guided:
            self.class_to_proxy.copy_(torch.arange(self.num_classes,
                                                   device=old.device))
        elif bool(seen.any()):
            means = F.normalize(sums[seen], dim=1)
            start = (self.centroids if self.is_mapped else
                     farthest_points(means, min(self.num_guided,
                                                len(means))))
            assignment, centroids = cosine_kmeans(means, start)
            self.centroids[:len(centroids)] = centroids
            self.class_to_proxy[seen] = assignment
        set_flag(self, 'mapped', 'is_mapped', True)
        self.class_sums.zero_()
        self.class_counts.zero_()
        return dict(
            moved=int((old != self.class_to_proxy).sum()),
            unseen=torch.nonzero(~seen).flatten().tolist(),
            num_classes=self.num_classes)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Take the class dimension of the checkpoint's buffers."""
        for name in self.checkpoint_sized_buffers:
            saved = state_dict.get(prefix + name)
            own = getattr(self, name)
            if saved is not None and saved.shape != own.shape:
                setattr(self, name, own.new_zeros(saved.shape))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def proxy_guidance_macs(s: Shape, num_guided: int, num_classes: int) -> int:
    """Multiply-adds that ``ProxyGuidance`` of the last layer adds to a
    train step of fast VPT-deep (inference: none): the class token's query
    W_q LN1(x_cls), B D^2, and its gradient, B D^2; two Proxy-Anchor
    losses, each cosine similarities B k D and their gradients to the
    features and the proxies, 2 B k D; the running class sums, C B D."""
    return (2 * s.batch * s.dims**2 + 2 * 3 * s.batch * num_guided * s.dims
            + num_classes * s.batch * s.dims)
