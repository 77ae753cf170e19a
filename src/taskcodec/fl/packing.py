"""Several quantized values in one element of Flower's secure-aggregation field.

Flower's SecAgg+ (``secaggplus_mod``) turns each float ``x`` a client uploads into one integer:
it scales ``x`` by the client's weight ``w = round(num_examples / max_weight * T) / T``, clips
to ``[-c, c]``, maps to ``[0, T]`` (``T``: the quantization range, ``c``: the clipping range)
with stochastic rounding, masks it and sends it as one int64; the server sums the integers
modulo ``M`` (the modulus range) and hands the strategy ``(S * 2c / T - n * c) / sum(w)``.
With the default ``T = 2^22`` one element carries 22 bits, far more than an error-feedback
update needs.

:class:`FieldPacking` puts ``slots`` values of ``bits`` bits each into one element, each slot
with ``headroom`` bits above it so that the sum of up to ``2^headroom`` clients stays in its
slot. The client builds the integer ``m`` itself (its values already multiplied by its weight)
and hands SecAgg+ the float that SecAgg+ maps back to exactly ``m``; the server recovers the
integer sum ``S`` from the aggregate and unpacks the slots. Nothing of SecAgg+ changes: the
masks, the field and the server learn the same as before, and each element still travels as
one int64, now holding ``slots`` values.

It needs ``T`` and ``M`` powers of two, ``c`` a power of two (so that the client's float maps
to ``m`` exactly), and ``M >= 2^(slots * (bits + headroom))``; two slots of 13 bits for up to
16 clients need ``T = 2^30`` and ``M >= 2^34``, for example
``SecAggPlusWorkflow(..., quantization_range=2**30, modulus_range=2**40)``.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from taskcodec.errors import TaskcodecError

__all__ = ["FieldPacking", "FIELD_KEYS"]

#: The SecAgg+ settings that the packing must share with Flower (names of ``SecAggPlusWorkflow``).
FIELD_KEYS = ("clipping_range", "quantization_range", "modulus_range", "max_weight")


def _power_of_two(x: float) -> bool:
    m, _ = math.frexp(float(x))
    return x > 0 and m == 0.5


class FieldPacking:
    """``slots`` signed values of ``bits`` bits in each SecAgg+ field element, for rounds of at
    most ``clients`` clients.

    Args:
        clipping_range, quantization_range, modulus_range, max_weight: SecAgg+'s settings (the
            ``SecAggPlusWorkflow`` arguments of the same names; :meth:`of` reads them).
        clients: the most clients whose values are summed (sets the headroom).
        slots: values per element; ``bits`` is the most that fits.
    """

    def __init__(self, *, clipping_range: float, quantization_range: int, modulus_range: int,
                 max_weight: float, clients: int, slots: int = 2) -> None:
        c, t, m = float(clipping_range), int(quantization_range), int(modulus_range)
        if not (_power_of_two(c) and _power_of_two(t) and _power_of_two(m)):
            raise TaskcodecError(f"packing needs SecAgg+'s clipping, quantization and modulus ranges to be "
                                 f"powers of two, got {clipping_range}, {quantization_range}, {modulus_range}")
        if not float(max_weight) > 0 or int(clients) < 1 or int(slots) < 1:
            raise TaskcodecError(f"packing needs max_weight > 0, clients >= 1 and slots >= 1, got "
                                 f"{max_weight}, {clients}, {slots}")
        self.clipping_range, self.quantization_range, self.modulus_range = c, t, m
        self.max_weight, self.clients, self.slots = float(max_weight), int(clients), int(slots)
        self.headroom = max(1, (self.clients - 1).bit_length())
        qbits = t.bit_length() - 1
        self.bits = (qbits - (self.slots - 1) * self.headroom) // self.slots
        self.width = self.bits + self.headroom
        if self.bits < 4:
            raise TaskcodecError(f"{slots} slots for {clients} clients leave {self.bits} bits a value in a "
                                 f"quantization range of 2^{qbits}; use fewer slots or a larger range")
        if self.slots * self.width > m.bit_length() - 1:
            raise TaskcodecError(f"the sum of {clients} clients needs a modulus range of at least "
                                 f"2^{self.slots * self.width}, got 2^{m.bit_length() - 1}")
        self.half = 1 << (self.bits - 1)

    @classmethod
    def of(cls, secagg: Any, *, clients: int, slots: int = 2) -> "FieldPacking":
        """The packing for a ``SecAggPlusWorkflow`` (or a mapping with :data:`FIELD_KEYS`)."""
        get = secagg.get if isinstance(secagg, dict) else (lambda k: getattr(secagg, k, None))
        return cls(**{k: get(k) for k in FIELD_KEYS}, clients=clients, slots=slots)

    def settings(self) -> Dict[str, Any]:
        return {"clipping_range": self.clipping_range, "quantization_range": self.quantization_range,
                "modulus_range": self.modulus_range, "max_weight": self.max_weight,
                "clients": self.clients, "slots": self.slots}

    def config(self, step: float) -> str:
        """The settings and the round's ``step``, as the server sends them to the clients."""
        return json.dumps(dict(self.settings(), step=float(step)))

    @classmethod
    def from_config(cls, spec: Any, held: Any) -> Tuple["FieldPacking", float]:
        """The packing and step of a :meth:`config` string, checked against ``held``, the
        SecAgg+ state of the client's ``secaggplus_mod`` (they must agree, or the server could
        not unpack the sum); :class:`TaskcodecError` otherwise."""
        try:
            d = json.loads(spec)
            packing = cls(**{k: d[k] for k in (*FIELD_KEYS, "clients", "slots")})
            step = float(d["step"])
        except (TypeError, ValueError, KeyError) as e:
            raise TaskcodecError(f"the packing config is malformed: {e!r}") from None
        if not (step > 0 and math.isfinite(step)):
            raise TaskcodecError(f"the packing config holds a step of {step}")
        if held is None or "target_range" not in held:
            raise TaskcodecError("the server packs values into SecAgg+'s field, but this node runs no "
                                 "secaggplus_mod before secure_compression_mod")
        mine = [float(held[k]) for k in ("clipping_range", "target_range", "mod_range", "max_weight")]
        if mine != [float(d[k]) for k in FIELD_KEYS]:
            raise TaskcodecError(f"the server packs for SecAgg+ settings {[d[k] for k in FIELD_KEYS]}, this "
                                 f"node's secaggplus_mod holds {mine}")
        return packing, step

    def elements(self, k: int) -> int:
        """Field elements that carry ``k`` values."""
        return -(-int(k) // self.slots)

    def weight(self, num_examples: float) -> float:
        """The weight SecAgg+ gives a client of ``num_examples`` (its own formula; exact, as
        the quantization range is a power of two)."""
        return round(float(num_examples) / self.max_weight * self.quantization_range) / self.quantization_range

    def encode(self, values: np.ndarray, step: float, num_examples: float) -> Tuple[np.ndarray, np.ndarray]:
        """``(upload, sent)``: the float64 vector to hand SecAgg+ for ``values`` in units of
        ``step`` (rounded, clipped to ``bits``), and the values the server will count for this
        client (``values - sent`` is what the client keeps for later rounds)."""
        v = np.asarray(values, np.float64).reshape(-1)
        w = self.weight(num_examples)
        if not (step > 0 and math.isfinite(step)) or w <= 0:
            raise TaskcodecError(f"packing needs a step > 0 and a weight > 0, got {step} and {w}")
        q = np.clip(np.rint(v * w / step), -self.half, self.half - 1)
        sent = (q * step / w).astype(np.float32)
        u = (q + self.half).astype(np.int64)
        u = np.concatenate([u, np.zeros(self.elements(v.size) * self.slots - v.size, np.int64)])
        m = np.zeros(self.elements(v.size), np.int64)
        for j in range(self.slots):
            m |= u[j::self.slots] << (j * self.width)
        return self._float_for(m, w), sent

    def _float_for(self, m: np.ndarray, w: float) -> np.ndarray:
        """Floats that SecAgg+ (scale by ``w``, clip, shift, scale by ``T / 2c``) maps to ``m``
        exactly: then its stochastic rounding has nothing to round."""
        c, t = self.clipping_range, self.quantization_range
        target = m.astype(np.float64) * (2 * c / t) - c  # exact: c and T are powers of two
        x = target / w
        for _ in range(4):  # a float or two off: step to the neighbour
            got = x * w
            if (got == target).all():
                break
            x = np.where(got > target, np.nextafter(x, -np.inf), np.where(got < target, np.nextafter(x, np.inf), x))
        return x

    def decode(self, aggregate: np.ndarray, k: int, step: float, num_examples: Sequence[float]) -> np.ndarray:
        """The weighted mean of the clients' values (``k`` of them) from SecAgg+'s aggregate of
        the clients of ``num_examples``."""
        agg = np.asarray(aggregate, np.float64).reshape(-1)
        n = len(num_examples)
        if agg.size != self.elements(k) or not 1 <= n <= self.clients:
            raise TaskcodecError(f"a packed aggregate of {self.elements(k)} elements from 1..{self.clients} "
                                 f"clients, got {agg.size} elements from {n}")
        c, t = self.clipping_range, self.quantization_range
        w_total = sum(self.weight(e) for e in num_examples)  # what SecAgg+ divided the sum by
        raw = (agg * w_total + n * c) * (t / (2 * c))
        s = np.rint(raw)
        if not np.isfinite(s).all() or (s < 0).any() or (s >= 2.0 ** (self.slots * self.width)).any():
            raise TaskcodecError("the aggregate is not a sum of packed values")
        if np.abs(raw - s).max(initial=0.0) > 1e-3:  # exact sums are integers to ~1e-6
            raise TaskcodecError("the aggregate is not a sum of packed values at these weights (did the clients "
                                 "report other example counts than SecAgg+ weighed them by?)")
        s = s.astype(np.int64)
        out = np.empty((s.size, self.slots), np.float64)
        mask = (1 << self.width) - 1
        for j in range(self.slots):
            out[:, j] = ((s >> (j * self.width)) & mask) - n * self.half
        return (out.reshape(-1)[:k] * step / w_total).astype(np.float32)
