"""The learned bottleneck of :class:`~taskcodec.nn.SplitCodec`: an identity-initialised encoder,
the one per-channel quantizer, a decoder, and CompressAI's ``EntropyBottleneck`` as the rate
model while training (see :mod:`taskcodec.nn.split_codec` for the whole design)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np
import torch
from torch import nn

from taskcodec.codec import quant
from taskcodec.errors import TaskcodecError
from taskcodec.nn.transforms import check_transform

__all__ = ["SplitBottleneck", "CDF_BUFFERS", "deployed_state"]

CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length")
"""EntropyBottleneck's coding buffers: not shipped (the integer tables of the codec are)."""


def _identity_conv(channels: int) -> nn.Conv2d:
    conv = nn.Conv2d(channels, channels, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(channels).view(channels, channels, 1, 1))
        conv.bias.zero_()
    return conv


def _residual(channels: int, hidden: int) -> nn.Sequential:
    branch = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.GELU(), nn.Conv2d(hidden, channels, 1))
    nn.init.zeros_(branch[2].weight)
    nn.init.zeros_(branch[2].bias)
    return branch


class SplitBottleneck(nn.Module):
    """Identity-initialised encoder → per-channel quantizer → decoder, with a learned density.

    Args:
        steps, zeros: the quantizer's per-channel steps and zero points (float32 ``[C]``).
        hidden: width of the residual branches (default ``C``).
        feature_scale: per-channel scale of the feature loss (default ``steps``).
    """

    def __init__(self, steps: Any, zeros: Any, *, hidden: Optional[int] = None,
                 feature_scale: Any = None) -> None:
        super().__init__()
        from compressai.entropy_models import EntropyBottleneck

        st = np.ascontiguousarray(steps, dtype=np.float32).reshape(-1)
        z = np.ascontiguousarray(zeros, dtype=np.float32).reshape(-1)
        if st.size != z.size or not (np.isfinite(st).all() and (st > 0).all() and np.isfinite(z).all()):
            raise TaskcodecError("one finite positive step and one finite zero point per channel")
        c = int(st.size)
        self.channels = c
        self.hidden = int(hidden or c)
        self.enc_lin, self.enc_res = _identity_conv(c), _residual(c, self.hidden)
        self.dec_lin, self.dec_res = _identity_conv(c), _residual(c, self.hidden)
        self.entropy = EntropyBottleneck(c)
        scale = st if feature_scale is None else np.asarray(feature_scale, dtype=np.float32).reshape(-1)
        self.register_buffer("step", torch.from_numpy(st.copy()))
        self.register_buffer("inv", torch.from_numpy((np.float32(1.0) / st).astype(np.float32)))  # as quant
        self.register_buffer("zero", torch.from_numpy(z.copy()))
        self.register_buffer("feature_scale", torch.from_numpy(np.maximum(scale, 1e-12).astype(np.float32)))

    @torch.no_grad()
    def set_linear(self, t: Any, t_inv: Any, mean: Any) -> None:
        """Start the encoder's 1×1 convolution as ``T (x - mean)`` and the decoder's as
        ``T^-1 y + mean`` (a post-training channel transform, e.g. FeatureCodec's "task")."""
        c = self.channels
        t, t_inv, mu = (torch.from_numpy(a) for a in check_transform((t, t_inv, mean), c))
        self.enc_lin.weight.copy_(t.view(c, c, 1, 1))
        self.enc_lin.bias.copy_(-(t @ mu))
        self.dec_lin.weight.copy_(t_inv.view(c, c, 1, 1))
        self.dec_lin.bias.copy_(mu)

    def density_parameters(self) -> List[nn.Parameter]:
        return list(self.entropy.parameters())

    def _c(self, t: torch.Tensor) -> torch.Tensor:
        return t.view(1, -1, 1, 1)

    def analysis(self, x: torch.Tensor) -> torch.Tensor:
        """The latent ``y`` (before quantization) of activations ``x [N, C, H, W]``."""
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise TaskcodecError(f"expected [N, {self.channels}, H, W] activations, got {tuple(x.shape)}")
        return self.enc_lin(x) + self.enc_res(x)

    def synthesis(self, y_hat: torch.Tensor) -> torch.Tensor:
        """The tail's input from a dequantized latent."""
        return self.dec_lin(y_hat) + self.dec_res(y_hat)

    def forward(self, x: torch.Tensor) -> Any:
        """``(tail_input, bits_per_element)``: straight-through rounding while training, the
        coder's exact arithmetic in eval mode (so it equals decoding the frame)."""
        y = self.analysis(x)
        u = (y - self._c(self.zero)) * self._c(self.inv)
        r = torch.round(u)
        q = u + (r - u).detach() if self.training else r
        y_hat = q * self._c(self.step) + self._c(self.zero)
        _, lik = self.entropy(u, training=self.training)
        bits = -torch.log2(lik).mean()
        return self.synthesis(y_hat), bits

    @torch.no_grad()
    def symbols(self, x: torch.Tensor) -> np.ndarray:
        """int32 symbols of activations ``x`` (the one quantizer, on the CPU)."""
        y = self.analysis(x.to(self.step.device).float()).float().cpu().contiguous().numpy()
        return quant.quantize(y, self.step.cpu().numpy(), self.zero.cpu().numpy(), channel_axis=1)

    @torch.no_grad()
    def reconstruct(self, q: np.ndarray) -> torch.Tensor:
        """The tail's input from int32 symbols ``q``."""
        y_hat = quant.dequantize(q, self.step.cpu().numpy(), self.zero.cpu().numpy(), channel_axis=1)
        return self.synthesis(torch.from_numpy(y_hat).to(self.step.device))


def deployed_state(bn: SplitBottleneck) -> Dict[str, torch.Tensor]:
    """The state that ships: everything but the rate model's coding buffers."""
    return {k: v for k, v in bn.state_dict().items() if k.split(".")[-1] not in CDF_BUFFERS}
