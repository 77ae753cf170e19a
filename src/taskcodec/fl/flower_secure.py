"""Compressed updates under Flower's secure aggregation (SecAgg+).

Client side: the compression mod runs *inside* Flower's ``secaggplus_mod`` (mods run outside
in), so SecAgg+ masks the compressed vector, not the model::

    from flwr.client.mod import secaggplus_mod
    from taskcodec.fl.flower_secure import secure_compression_mod
    app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod, secure_compression_mod()])

Server side: the strategy wrapper around any legacy Flower strategy (FedAvg by default) and
Flower's own ``SecAggPlusWorkflow``::

    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
    from taskcodec.fl.flower_secure import SecureCompressedStrategy
    fit = SecAggPlusWorkflow(num_shares=..., reconstruction_threshold=...,
                             quantization_range=2 ** 30, modulus_range=2 ** 40)
    strategy = SecureCompressedStrategy(FedAvg(fraction_fit=1.0), method="support", ratio=0.08,
                                        secagg=fit)  # two values packed into each field element
    context = LegacyContext(context=context, config=ServerConfig(num_rounds=60), strategy=strategy)
    DefaultWorkflow(fit_workflow=fit)(grid, context)

Each round the server puts into every FitIns config the method, the model size and either
the round's support (``method="support"``, :class:`~taskcodec.fl.secure.SupportPlanner`) or
the sketch's shape and seed (``method="sketch"``, FetchSGD). The mod trains from the model,
computes ``delta = trained - received`` and replies with one float vector: the
error-feedback-corrected delta on the support, or the delta's count sketch. Every client's
vector has the same length and meaning, so SecAgg+ sums them and the server learns the
weighted mean of the vectors only; the wrapper turns it into a sparse step of the model.

Downlink: the step is sparse, so a node that holds the model of the round before gets the
step (and the next support) as one checksummed sparse frame instead of the dense model; it
keeps its copy of the model in its ``context.state`` and checks the result against the
server's CRC-32. Other nodes (new, dropped out, or out of step) get the dense model.

Flower's central differential privacy composes: wrap this strategy in
``DifferentialPrivacyClientSideFixedClipping`` and put ``fixedclipping_mod`` after
``secure_compression_mod`` (it then clips the dense model update before compression). The noise
that wrapper adds to the model is dense, so every node gets the model dense then.

Without SecAgg+ (``DefaultWorkflow()`` alone) the same pair works and the server sees each
client's vector; the wrapper averages them with the clients' example counts, which is what
SecAgg+ computes.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from flwr.common import FitIns, Parameters, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.server.strategy import FedAvg, Strategy

from taskcodec.errors import TaskcodecError
from taskcodec.fl.compressor import TopKCompressor
from taskcodec.fl.flower_secure_mod import (
    METHODS,
    PREFIX,
    _crc,
    _flat,
    _unflat,
    secure_compression_mod,
)
from taskcodec.fl.packing import FieldPacking
from taskcodec.fl.secure import (
    CountSketch,
    SketchServer,
    SupportClient,
    SupportPlanner,
    read_support_frame,
    small_tensor_positions,
    support_frame,
)

__all__ = ["secure_compression_mod", "SecureCompressedStrategy", "PREFIX", "METHODS"]

logger = logging.getLogger("taskcodec.fl.flower_secure")


class SecureCompressedStrategy(Strategy):
    """Wraps a legacy Flower strategy so that clients upload compressed vectors whose weighted
    mean (all that SecAgg+ reveals) is enough to step the model.

    Args:
        strategy: the strategy that samples clients and aggregates metrics (``FedAvg()``).
        method: ``"support"`` (shared-support top-k) or ``"sketch"`` (FetchSGD count sketch).
        ratio: support: its size as a share of the model's elements; sketch: the table's size
            as a share of them.
        explore, warmup: :class:`~taskcodec.fl.secure.SupportPlanner` settings.
        decay: how much of its unsent residual a client keeps from one round to the next (sent
            to the clients with the support; the planner's estimates use it too).
        server_momentum: momentum of the server's steps (FedAvgM): the step applied is
            ``v = server_momentum * v + aggregate``, which keeps moving the positions that are
            not in the round's support (shared support only).
        dense_below: tensors with fewer elements are in every support (biases).
        rows: sketch rows; k_ratio: share of the model's elements the sketch server applies
            per round (default: a quarter of the table's columns).
        sketch_momentum: the sketch server's momentum (0: error feedback only; a client's
            update is already a whole local epoch, so momentum on top of it overshoots).
        downlink: :class:`~taskcodec.fl.TopKCompressor` arguments for the steps sent to the
            nodes that hold the last model (error feedback on the server; the model everyone
            holds, the server included, is the one the frames build); None sends each step
            exactly (float32 values where it is not zero), or the dense model when that is
            smaller.
        seed: exploration stream and sketch hashes.
        secagg: the ``SecAggPlusWorkflow`` that runs this strategy (or a dict of its
            :data:`~taskcodec.fl.packing.FIELD_KEYS`): the shared support's values are then
            packed, ``pack_slots`` to a field element (:class:`~taskcodec.fl.packing.FieldPacking`),
            so each travels in 1 / ``pack_slots`` of an int64. Needs SecAgg+ on the clients.
        pack_range: the largest value a client may send in the first round (larger ones are
            clipped and kept in its residual); later rounds scale to ``16 x`` the largest value
            of the last aggregate.

    Attributes:
        uplink_values: per round, the length of the vector each client sent.
        downlink_bytes: per round, model bytes of the FitIns sent (dense arrays or frames).
        downlink_frames: per round, how many FitIns carried a step frame.
    """

    def __init__(self, strategy: Optional[Strategy] = None, *, method: str = "support", ratio: float = 0.04,
                 explore: float = 0.3, decay: float = 0.7, warmup: int = 4, server_momentum: float = 0.7,
                 dense_below: int = 1024, rows: int = 5, k_ratio: Optional[float] = None,
                 sketch_momentum: float = 0.0, downlink: Optional[Dict[str, Any]] = None,
                 seed: int = 0, secagg: Any = None, pack_slots: int = 2, pack_range: float = 1.0) -> None:
        if method not in METHODS:
            raise TaskcodecError(f"method must be one of {METHODS}, got {method!r}")
        if not 0.0 < float(ratio) <= 1.0:
            raise TaskcodecError(f"ratio must be in (0, 1], got {ratio}")
        if not 0.0 <= float(server_momentum) < 1.0:
            raise TaskcodecError(f"server_momentum must be in [0, 1), got {server_momentum}")
        self.strategy = strategy if strategy is not None else FedAvg()
        self.method, self.ratio = method, float(ratio)
        SupportClient(1, decay=decay)  # validate now
        self.explore, self.decay, self.warmup = float(explore), float(decay), int(warmup)
        self.server_momentum = float(server_momentum) if method == "support" else 0.0
        self.dense_below, self.rows, self.k_ratio = int(dense_below), int(rows), k_ratio
        self.sketch_momentum, self.seed = float(sketch_momentum), int(seed)
        self._downlink_args = dict(downlink) if downlink is not None else None
        self._secagg, self.pack_slots = (secagg if method == "support" else None), int(pack_slots)
        if self._secagg is not None:
            FieldPacking.of(self._secagg, clients=1, slots=self.pack_slots)  # validate now
        if not (float(pack_range) > 0 and np.isfinite(pack_range)):
            raise TaskcodecError(f"pack_range must be a positive number, got {pack_range}")
        self.pack_range = float(pack_range)
        self._packing: Optional[FieldPacking] = None
        if self._downlink_args is not None:
            TopKCompressor(**self._downlink_args)  # validate now
        self._down: Optional[TopKCompressor] = None
        self._model: Optional[List[np.ndarray]] = None
        self._model_crc = 0  # _crc(self._model), kept with it
        self._velocity: Optional[np.ndarray] = None
        self._planner: Optional[SupportPlanner] = None
        self._sketcher: Optional[SketchServer] = None
        self._support: Optional[np.ndarray] = None
        self._version = 0
        self._last_frame: Optional[bytes] = None  # the step from version - 1 to version (None: none)
        self._node_version: Dict[int, int] = {}
        self.uplink_values: Dict[int, int] = {}
        self.downlink_bytes: Dict[int, int] = {}
        self.downlink_frames: Dict[int, int] = {}

    def __repr__(self) -> str:
        return f"SecureCompressedStrategy({self.strategy!r}, method={self.method!r}, ratio={self.ratio})"

    def __getattr__(self, name: str) -> Any:
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def initialize_parameters(self, client_manager: Any) -> Optional[Parameters]:
        return self.strategy.initialize_parameters(client_manager)

    def _start(self, model: List[np.ndarray]) -> None:
        n = sum(a.size for a in model)
        self._model = [a.copy() for a in model]
        self._model_crc = _crc(self._model)
        self._velocity = np.zeros(n, np.float32)
        self._pack_step = 0.0
        self._version, self._last_frame = 1, None
        self._node_version.clear()
        self._down = TopKCompressor(**self._downlink_args) if self._downlink_args is not None else None
        if self.method == "support":
            always = small_tensor_positions([a.size for a in model], self.dense_below)
            self._planner = SupportPlanner(n, self.ratio, explore=self.explore, decay=self.decay,
                                           always=always, warmup=self.warmup, seed=self.seed)
        else:
            cols = max(1, int(self.ratio * n) // self.rows)
            sketch = CountSketch(n, rows=self.rows, cols=cols, seed=self.seed)
            k = int(self.k_ratio * n) if self.k_ratio else max(1, cols // 4)
            self._sketcher = SketchServer(sketch, k, momentum=self.sketch_momentum)

    def configure_fit(self, server_round: int, parameters: Parameters, client_manager: Any) -> List[Tuple[Any, FitIns]]:
        model = parameters_to_ndarrays(parameters)
        crc = _crc(model)
        if self._model is None or [a.shape for a in model] != [a.shape for a in self._model]:
            self._start(model)  # a new model: start over
        elif crc != self._model_crc:
            # Not the model this wrapper made (an outer wrapper, e.g. Flower's central DP, added
            # noise to it): adopt it, keep the planner's estimates, and send it dense to everyone.
            self._model, self._model_crc = [a.copy() for a in model], crc
            self._version += 1
            self._node_version.clear()
        n = sum(a.size for a in model)
        cfg: Dict[str, Any] = {PREFIX + "method": self.method, PREFIX + "n": n, PREFIX + "version": self._version,
                               PREFIX + "crc": self._model_crc}
        instructions = self.strategy.configure_fit(server_round, parameters, client_manager)
        self._packing = None
        if self.method == "support":
            self._support = self._planner.support(server_round)
            cfg[PREFIX + "support"] = support_frame(n, None, self._support)
            cfg[PREFIX + "decay"] = self.decay
            if self._secagg is not None and instructions:
                self._packing = FieldPacking.of(self._secagg, clients=len(instructions), slots=self.pack_slots)
                if self._pack_step <= 0:
                    self._pack_step = self.pack_range / self._packing.half
                cfg[PREFIX + "pack"] = self._packing.config(self._pack_step)
        else:
            sk = self._sketcher.sketch
            cfg.update({PREFIX + "rows": sk.rows, PREFIX + "cols": sk.cols, PREFIX + "seed": sk.seed})
        dense_bytes = sum(a.nbytes for a in self._model)
        step_bytes = len(self._last_frame) if self._last_frame is not None else 0
        self.downlink_bytes[server_round] = 0
        self.downlink_frames[server_round] = 0
        out = []
        for proxy, ins in instructions:
            c = dict(ins.config, **cfg)
            params = parameters
            if self._node_version.get(int(proxy.node_id)) == self._version - 1 and step_bytes < dense_bytes:
                params = Parameters(tensors=[], tensor_type=parameters.tensor_type)
                if self._last_frame is not None:
                    c[PREFIX + "step"] = self._last_frame
                self.downlink_frames[server_round] += 1
                self.downlink_bytes[server_round] += step_bytes
            else:
                self.downlink_bytes[server_round] += dense_bytes
            self.downlink_bytes[server_round] += len(cfg.get(PREFIX + "support", b""))
            out.append((proxy, FitIns(params, c)))
        return out

    def _apply(self, step: np.ndarray) -> None:
        """Steps the model by ``step`` (dense, float32) as the nodes will: through the downlink
        compressor when there is one, else exactly; keeps the frame for the nodes."""
        n = step.size
        if self._down is not None:
            frame = self._down.compress({"step": step})
        else:
            nz = np.flatnonzero(step)
            frame = support_frame(n, (nz.astype(np.uint32), step[nz])) if nz.size else None
        if frame is not None:
            (si, sv), _ = read_support_frame(frame, n)
            flat = _flat(self._model)
            flat[si] += sv
            self._model = _unflat(flat, self._model)
            self._model_crc = _crc(self._model)
        self._last_frame = frame
        self._version += 1

    def aggregate_fit(self, server_round: int, results: List[Tuple[Any, Any]],
                      failures: List[Any]) -> Tuple[Optional[Parameters], Dict[str, Any]]:
        for proxy, res in results:  # nodes that reply hold the version they report
            v = res.metrics.get(PREFIX + "version")
            self._node_version[int(proxy.node_id)] = int(v) if v is not None else -1
        if not results or self._model is None:
            return None, {}
        vectors = [parameters_to_ndarrays(res.parameters) for _, res in results]
        weights = np.array([res.num_examples for _, res in results], np.float64)
        n_expected = self._support.size if self.method == "support" else self._sketcher.sketch.size
        if self._packing is not None:
            n_expected = self._packing.elements(n_expected)
        if any(len(v) != 1 or v[0].size != n_expected for v in vectors) or weights.sum() <= 0:
            logger.warning("round %d: the aggregate is not a vector of %d values; the model is kept",
                           server_round, n_expected)
            return None, {}
        if self._packing is None:
            # Under SecAgg+ every result holds the same aggregate; without it, the clients' own vectors.
            mean = sum(w * v[0].astype(np.float64).reshape(-1) for w, v in zip(weights, vectors)) / weights.sum()
            mean = mean.astype(np.float32)
        else:  # SecAgg+'s one aggregate of the packed vectors: unpack the mean
            try:
                mean = self._packing.decode(vectors[0][0], self._support.size, self._pack_step,
                                            [res.num_examples for _, res in results])
            except TaskcodecError as e:
                logger.warning("round %d: %s; the model is kept", server_round, e)
                return None, {}
            top = float(np.abs(mean).max()) if mean.size else 0.0
            if top > 0:
                self._pack_step = 16.0 * top / self._packing.half
        if not np.isfinite(mean).all():
            logger.warning("round %d: the aggregate holds a NaN or an infinity; the model is kept", server_round)
            return None, {}
        self.uplink_values[server_round] = int(n_expected)
        step = np.zeros(self._velocity.size, np.float32)
        if self.method == "support":
            step[self._support] = mean
            self._planner.update(self._support, mean)
            if self.server_momentum > 0:
                self._velocity *= self.server_momentum
                self._velocity += step
                step = self._velocity.copy()
        else:
            idx, val = self._sketcher.step(mean)
            step[idx] = val
        self._apply(step)
        metrics: Dict[str, Any] = {}
        agg = getattr(self.strategy, "fit_metrics_aggregation_fn", None)
        if agg is not None:
            metrics = agg([(res.num_examples, res.metrics) for _, res in results])
        return ndarrays_to_parameters(self._model), metrics

    def configure_evaluate(self, server_round: int, parameters: Parameters, client_manager: Any) -> Any:
        return self.strategy.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(self, server_round: int, results: Any, failures: Any) -> Any:
        return self.strategy.aggregate_evaluate(server_round, results, failures)

    def evaluate(self, server_round: int, parameters: Parameters) -> Any:
        return self.strategy.evaluate(server_round, parameters)
