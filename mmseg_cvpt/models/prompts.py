"""Where prompts come from: a small module that returns the prompts of every
prompted layer.

A prompted backbone builds one of these from ``prompt_cfg`` and calls it once
per forward: ``prompts()`` is an (L, m, D) tensor whose row i holds the
prompts of layer i. (One call for all layers keeps the backward to one
gradient tensor rather than a full-size one per layer.)

* ``LayerPrompts``: independent learnable prompts (VPT, CVPT).
* ``WhitenedPrompts`` and ``BilinearPrompts``: BPT's re-parameterisations
  through the whitening of the vectors the prompts meet in attention
  (Bilinear Prompt Tuning, "Attention to the Burstiness in Visual Prompt
  Tuning", ICCV 2025). ``calibrate_prompts(backbone, batches)`` (see
  ``.prompt_statistics``) measures those statistics and hands them to
  ``set_statistics``.
"""
import logging
import math
from typing import Tuple

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmseg.registry import MODELS
from torch import Tensor, nn

from .costs import Shape
from .flags import register_flag, set_flag

PROMPT_INITS = ('uniform', 'xavier', 'normal')


def prompt_init_bound(init: str, num_prompts: int, embed_dims: int,
                      patch_size: int) -> float:
    """The half-width v of a U(-v, v) init, or the std of the 'normal' one.

    'uniform' is VPT's v = sqrt(6 / (3 * patch_size^2 + D)); 'xavier' is
    xavier-uniform of an (m, D) matrix, v = sqrt(6 / (m + D)) (CVPT);
    'normal' is N(0, 0.02^2).
    """
    if init not in PROMPT_INITS:
        raise ValueError(f'prompt init must be one of {PROMPT_INITS}, '
                         f'got {init!r}')
    if init == 'uniform':
        return math.sqrt(6. / (3 * patch_size**2 + embed_dims))
    if init == 'xavier':
        return math.sqrt(6. / (num_prompts + embed_dims))
    return 0.02


def init_prompt_tensor(tensor: Tensor, init: str, bound: float) -> None:
    """Fill ``tensor`` from U(-bound, bound), or N(0, bound^2) for 'normal'."""
    if init == 'normal':
        nn.init.normal_(tensor, std=bound)
    else:
        nn.init.uniform_(tensor, -bound, bound)


class PromptProvider(BaseModule):
    """Base of the prompt providers: L layers of m prompts of width D.

    The backbone fills ``num_layers``, ``num_prompts``, ``embed_dims`` and,
    unless the config sets them, the method's ``init`` and the
    ``patch_size`` that VPT's 'uniform' init uses.

    Args:
        num_layers (int): L, the number of prompted layers.
        num_prompts (int): m, prompts per layer.
        embed_dims (int): D.
        init (str): 'uniform', 'xavier' or 'normal', see
            ``prompt_init_bound``.
        patch_size (int): used by the 'uniform' init.
    """

    def __init__(self,
                 num_layers: int,
                 num_prompts: int,
                 embed_dims: int,
                 init: str = 'xavier',
                 patch_size: int = 16,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.init = init
        self.init_bound = prompt_init_bound(init, num_prompts, embed_dims,
                                            patch_size)
        self.num_layers = num_layers
        self.num_prompts = num_prompts
        self.embed_dims = embed_dims


@MODELS.register_module()
class LayerPrompts(PromptProvider):
    """Independent learnable prompts per layer: P_i in R^{m x D}, i < L.

    Args: see ``PromptProvider``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.tokens = nn.Parameter(
            torch.empty(self.num_layers, self.num_prompts, self.embed_dims))
        init_prompt_tensor(self.tokens, self.init, self.init_bound)

    def forward(self) -> Tensor:
        """The prompts of all layers, (L, m, D)."""
        return self.tokens


# ---- BPT: prompts through the whitening of their query statistics --------
def whitening_spectrum(statistics: Tensor,
                       eps: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Eigen-decomposition of S = U diag(s) U^T and the whitening gains.

    Returns ``(s, U, g)`` per layer, eigenvalues ascending, with
    g = (s + eps * mean(s))^(-1/2): ``eps`` is relative to the mean
    eigenvalue tr(S) / D, so that a rank-deficient S (fewer tokens than D)
    still gives finite gains. Computed in float64.
    """
    s, vectors = torch.linalg.eigh(statistics.double())
    s = s.clamp_min(0.)  # round-off below 0 in a rank-deficient S
    mean = s.mean(-1, keepdim=True)
    if not bool((mean > 0).all()):
        raise ValueError(
            'prompt statistics are zero for some layer: no query tokens '
            'were seen; calibrate on a non-empty set of images')
    return s, vectors, (s + eps * mean).rsqrt()


def check_eps(eps) -> float:
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or \
            not eps > 0:
        raise ValueError(
            'eps (the whitening regulariser, relative to the mean '
            f'eigenvalue of the statistics) must be > 0, got {eps!r}')
    return float(eps)


class WhiteningProvider(PromptProvider):
    """Base of BPT's providers: statistics in, whitened parameterisation out.

    Until ``set_statistics`` is called the parameterisation is the identity
    (the prompts are their tokens / coefficients); the buffer ``calibrated``
    records the calibration, is saved in checkpoints, and tells the
    calibration hook not to calibrate again (resumed runs, loaded
    checkpoints); ``is_calibrated`` is its value as Python state
    (see ``flags``).

    Scale: the whitening matrices are normalised to the mean squared
    singular value 1 (Frobenius norm sqrt of their column count), i.e.
    W = c * S^(-1/2) with c chosen so. For isotropic tokens the prompts then
    keep the RMS of ``LayerPrompts``' init, and an Adam step on the tokens
    moves the prompts by as much as it moves ``LayerPrompts``: the learning
    rates of the configs keep their meaning. W^T S W = c^2 I.

    Args:
        eps (float): whitening regulariser, relative to the mean eigenvalue
            of S (see ``whitening_spectrum``). Default 1e-3.
        See ``PromptProvider`` for the others.
    """

    def __init__(self, *args, eps: float = 1e-3, **kwargs):
        super().__init__(*args, **kwargs)
        self.eps = check_eps(eps)
        register_flag(self, 'calibrated', 'is_calibrated')
        self._warned_uncalibrated = False

    def set_statistics(self, statistics: Tensor) -> None:
        """Whiten against S (L, D, D), the second moments of the vectors
        that query each layer's prompts."""
        expected = (self.num_layers, self.embed_dims, self.embed_dims)
        if tuple(statistics.shape) != expected:
            raise ValueError(f'statistics must have the shape {expected} '
                             f'(L, D, D), got {tuple(statistics.shape)}')
        with torch.no_grad():
            self._whiten(*whitening_spectrum(statistics, self.eps))
            set_flag(self, 'calibrated', 'is_calibrated', True)

    def _whiten(self, eigenvalues: Tensor, eigenvectors: Tensor,
                gains: Tensor) -> None:
        raise NotImplementedError

    def train(self, mode: bool = True) -> 'WhiteningProvider':
        """Train mode; warns once if it trains uncalibrated."""
        super().train(mode)
        if mode and not self.is_calibrated and \
                not self._warned_uncalibrated:
            self._warned_uncalibrated = True
            print_log(
                f'{type(self).__name__} is not calibrated: training with '
                'the identity parameterisation (no whitening). Add '
                "dict(type='PromptCalibrationHook') to custom_hooks, or "
                'call calibrate_prompts(backbone, batches) first.',
                logger='current',
                level=logging.WARNING)
        return self


@MODELS.register_module()
class WhitenedPrompts(WhiteningProvider):
    """BPT's whitened prompts: P_i = T_i W_i.

    T (L, m, D) learned, W_i = c U diag(s + eps)^(-1/2) U^T the ZCA
    whitening of S_i = U diag(s) U^T (``set_statistics``): a buffer
    (BPT's fWhiten) or, with ``trainable_whitening=True``, a parameter
    initialised the same way (tWhiten). T has ``LayerPrompts``' init.

    Args:
        trainable_whitening (bool): learn W too. Default False.
        See ``WhiteningProvider`` and ``PromptProvider`` for the others.
    """

    def __init__(self, *args, trainable_whitening: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(trainable_whitening, bool):
            raise ValueError('trainable_whitening must be True or False, '
                             f'got {trainable_whitening!r}')
        self.tokens = nn.Parameter(
            torch.empty(self.num_layers, self.num_prompts, self.embed_dims))
        init_prompt_tensor(self.tokens, self.init, self.init_bound)
        identity = torch.eye(self.embed_dims).repeat(self.num_layers, 1, 1)
        if trainable_whitening:
            self.whitening = nn.Parameter(identity)
        else:
            self.register_buffer('whitening', identity)

    def _whiten(self, eigenvalues, eigenvectors, gains):
        whitening = (eigenvectors * gains[:, None]) @ eigenvectors.mT
        scale = (self.embed_dims / gains.square().sum(-1)).sqrt()
        self.whitening.copy_(whitening * scale[:, None, None])

    def forward(self) -> Tensor:
        """P = T W, (L, m, D)."""
        return torch.matmul(self.tokens, self.whitening)


@MODELS.register_module()
class BilinearPrompts(WhiteningProvider):
    """BPT's bilinear (low-rank) prompts: P_i = A_i B_i^T.

    A (L, m, p) and B (L, D, p) both learned; p = ``rank`` <= D. B starts
    from the whitening: the p leading principal directions of S_i, each
    scaled by (s + eps)^(-1/2) and all by c (``set_statistics``), so that
    B^T S B = c^2 diag(s / (s + eps)) ~ c^2 I; before that B holds the
    first p columns of the identity. c makes ||B||_F^2 = p, and A is drawn
    from ``LayerPrompts``' init scaled by sqrt(D / p): the prompts start
    with the RMS of ``LayerPrompts``' init.

    Args:
        rank (int): p, 1 <= p <= D.
        See ``WhiteningProvider`` and ``PromptProvider`` for the others.
    """

    def __init__(self, *args, rank: int, **kwargs):
        super().__init__(*args, **kwargs)
        if (isinstance(rank, bool) or not isinstance(rank, int)
                or not 1 <= rank <= self.embed_dims):
            raise ValueError(
                'rank (p of the bilinear prompts A B^T) must be an integer '
                f'between 1 and embed_dims={self.embed_dims}, got {rank!r}')
        self.rank = rank
        self.coefficients = nn.Parameter(
            torch.empty(self.num_layers, self.num_prompts, rank))
        init_prompt_tensor(self.coefficients, self.init,
                           self.init_bound * math.sqrt(self.embed_dims / rank))
        self.basis = nn.Parameter(
            torch.eye(self.embed_dims, rank).repeat(self.num_layers, 1, 1))

    def _whiten(self, eigenvalues, eigenvectors, gains):
        leading = slice(self.embed_dims - self.rank, None)  # ascending order
        gains = gains[:, leading]
        scale = (self.rank / gains.square().sum(-1)).sqrt()
        self.basis.copy_(eigenvectors[..., leading] *
                         (gains * scale[:, None])[:, None])

    def forward(self) -> Tensor:
        """P = A B^T, (L, m, D)."""
        return torch.matmul(self.coefficients, self.basis.mT)


def bilinear_prompts_macs(s: Shape, rank: int) -> Tuple[int, int]:
    """(train step, inference) multiply-adds that ``BilinearPrompts`` of
    rank p adds to the method it feeds: the product P_l = A_l B_l^T,
    L m p D, every forward, and the gradients of A and B, 2 L m p D, in
    the train step."""
    product = s.layers * s.prompts * rank * s.dims
    return 3 * product, product
