"""Post-training channel transforms for :class:`taskcodec.nn.FeatureCodec` (``transform="task"``).

The task transform decorrelates the channels of a cut activation in the metric of the tail's
sensitivity. With ``x`` one position's channel vector, ``e`` its coding error and ``G`` the
tail's Fisher information with respect to ``x`` (the mean over positions and views of
``g g^T``, ``g`` the gradient of ``log p(y)`` with ``y`` drawn from the tail's own softmax), the
expected KL divergence of the tail's output grows as ``e^T G e / 2``. With ``W = G^(1/2)`` that
is plain squared error in ``z = W x``; the Karhunen-Loève transform of ``z`` (the eigenvectors
``U`` of ``W Σ W``, ``Σ`` the activations' covariance) decorrelates it, and one quantization
step for all components then minimises the expected loss increase for the rate (high-rate
theory; components whose variance is below the step code as zeros). So

    y = T (x - mean),   T = U^T W / s,   x_hat = T^-1 y_hat + mean,   T^-1 = s W^-1 U

with ``s`` chosen so the components' variances average 1 (the step is then in units of the
mean component's standard deviation). ``G`` is regularised by ``ridge · trace(G) / C`` on the
diagonal, so channels the tail ignores get coarse steps instead of infinite ones.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np
import torch

from taskcodec.errors import TaskcodecError

__all__ = ["tail_fisher", "task_transform", "apply_transform", "invert_transform",
           "check_transform", "sensitivity"]


def tail_fisher(features: Any, tail: Any, *, channel_axis: int = 1, target: str = "sampled",
                draws: int = 2, batch: int = 32, seed: int = 0) -> np.ndarray:
    """The tail's sensitivity per channel pair, ``[C, C]`` float64: the mean over views and
    positions of ``g g^T``, ``g`` the gradient of ``log p(label)`` with respect to one
    position's channel vector. ``target="sampled"``: ``draws`` labels drawn from the tail's own
    softmax (the Fisher information, i.e. the curvature of the KL divergence);
    ``target="top"``: the tail's top class (the gradient energy of its log-probability)."""
    x = features if isinstance(features, torch.Tensor) else torch.from_numpy(np.asarray(features))
    x = x.detach().float().cpu()
    if x.ndim < 2:
        raise TaskcodecError(f"features need a batch and a channel axis, got shape {tuple(x.shape)}")
    axis = channel_axis + x.ndim if channel_axis < 0 else channel_axis
    if not 0 < axis < x.ndim:
        raise TaskcodecError(f"channel_axis {channel_axis} must name a non-batch axis of {tuple(x.shape)}")
    if draws < 1 or batch < 1 or target not in ("sampled", "top"):
        raise TaskcodecError(f"draws and batch must be positive, target 'sampled' or 'top' ({target!r})")
    draws = 1 if target == "top" else draws
    c = x.shape[axis]
    gen = torch.Generator().manual_seed(seed)
    acc = torch.zeros(c, c, dtype=torch.float64)
    count = 0
    was_training = getattr(tail, "training", False)
    if hasattr(tail, "eval"):
        tail.eval()
    try:
        for start in range(0, x.shape[0], batch):
            f = x[start:start + batch].clone().requires_grad_(True)
            with torch.enable_grad():
                logp = torch.log_softmax(tail(f).float().reshape(f.shape[0], -1), dim=1)
                for d in range(draws):
                    labels = (logp.detach().argmax(1, keepdim=True) if target == "top"
                              else torch.multinomial(logp.detach().exp(), 1, generator=gen))
                    (g,) = torch.autograd.grad(logp.gather(1, labels).sum(), f,
                                               retain_graph=d + 1 < draws)
                    gc = g.movedim(axis, -1).reshape(-1, c).double()
                    acc += gc.T @ gc
                    count += gc.shape[0]
    finally:
        if was_training and hasattr(tail, "train"):
            tail.train()
    if not torch.isfinite(acc).all():
        raise TaskcodecError("the tail's gradients are not finite")
    return (acc / max(count, 1)).numpy()


def sensitivity(features: Any, tail: Any, *, channel_axis: int = 1) -> np.ndarray:
    """``tail`` itself when it is already a ``[C, C]`` Fisher matrix (an array, e.g. from
    :func:`tail_fisher`, reused across rates), else :func:`tail_fisher` of the features."""
    if isinstance(tail, np.ndarray):
        return tail
    return tail_fisher(features, tail, channel_axis=channel_axis)


def _sym_pow(a: np.ndarray, power: float) -> np.ndarray:
    w, v = np.linalg.eigh(0.5 * (a + a.T))
    return (v * np.maximum(w, 0.0) ** power) @ v.T


def task_transform(per_c: np.ndarray, fisher: Optional[np.ndarray], *,
                   ridge: float = 1e-3) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T, T_inv, mean)`` (float32) for channel-first samples ``per_c [C, M]`` and the tail's
    Fisher information ``[C, C]`` (``None``: the identity, i.e. plain PCA whitening order)."""
    c = per_c.shape[0]
    wide = per_c.astype(np.float64)
    mean = wide.mean(axis=1)
    centred = wide - mean[:, None]
    cov = centred @ centred.T / max(centred.shape[1], 1)
    del wide, centred
    g = np.eye(c) if fisher is None else np.asarray(fisher, dtype=np.float64)
    if g.shape != (c, c) or not np.isfinite(g).all():
        raise TaskcodecError(f"the sensitivity matrix must be finite [{c}, {c}], got {g.shape}")
    g = 0.5 * (g + g.T)
    scale = float(np.trace(g)) / c
    if not scale > 0:
        raise TaskcodecError("the tail is insensitive to these features (zero Fisher information)")
    g = g / scale + ridge * np.eye(c)
    w, w_inv = _sym_pow(g, 0.5), _sym_pow(g, -0.5)
    lam, u = np.linalg.eigh(w @ cov @ w)
    order = np.argsort(lam)[::-1]
    lam, u = np.maximum(lam[order], 0.0), u[:, order]
    s = float(np.sqrt(max(lam.mean(), 1e-30)))
    t = u.T @ w / s
    t_inv = s * (w_inv @ u)
    return t.astype(np.float32), t_inv.astype(np.float32), mean.astype(np.float32)


def apply_transform(x: np.ndarray, t: np.ndarray, mean: np.ndarray, axis: int) -> np.ndarray:
    """``T (x - mean)`` along ``axis`` of float32 ``x`` (same shape, float32)."""
    moved = np.moveaxis(x, axis, -1)
    y = (moved - mean) @ t.T
    return np.ascontiguousarray(np.moveaxis(y.astype(np.float32), -1, axis))


def invert_transform(y: np.ndarray, t_inv: np.ndarray, mean: np.ndarray, axis: int) -> np.ndarray:
    """``T^-1 y + mean`` along ``axis`` of float32 ``y`` (same shape, float32)."""
    moved = np.moveaxis(y, axis, -1)
    x = moved @ t_inv.T + mean
    return np.ascontiguousarray(np.moveaxis(x.astype(np.float32), -1, axis))


def check_transform(transform: Any, channels: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T, T_inv, mean)`` as contiguous float32, checked: finite, ``[C, C]``, ``[C, C]``, ``[C]``."""
    try:
        t, t_inv, mu = (np.ascontiguousarray(a, dtype=np.float32) for a in transform)
    except (TypeError, ValueError) as e:
        raise TaskcodecError(f"the transform must be (T, T_inv, mean) arrays: {e}") from None
    c = int(channels)
    if t.shape != (c, c) or t_inv.shape != (c, c) or mu.shape != (c,) or not all(
            np.isfinite(a).all() for a in (t, t_inv, mu)):
        raise TaskcodecError(f"the transform must be finite [{c}, {c}] matrices and a [{c}] mean")
    return t, t_inv, mu
