"""A Flower app for the secure-aggregation tests: the least-squares clients of ``flower_app``
under Flower's SecAgg+ (``secaggplus_mod`` + ``SecAggPlusWorkflow``) with taskcodec's
``secure_compression_mod`` and ``SecureCompressedStrategy``.

Two spies record what travels, as ``.npy`` files in the folder named by the environment
variable ``TASKCODEC_SPY_DIR`` (Ray workers and SuperNodes are other processes):

* ``vec-R-P.npy``: the compressed vector client P made in round R (inside SecAgg+);
* ``masked-R-P.npy``: the masked vector of client P that left it in round R (outside SecAgg+).

The server writes per round the aggregate vector SecAgg+ revealed (``agg-R.npy``) and a JSON
summary (losses, downlink frames) to the run config's ``out``, or the path given to simulate.
Clients drop out of rounds as ``flower_app.dropped`` says (30 %).
"""

from __future__ import annotations

import json
import os

import numpy as np
from flwr.app import Context, Message
from flwr.client import ClientApp, NumPyClient
from flwr.client.mod import fixedclipping_mod, secaggplus_mod
from flwr.common import ndarrays_to_parameters
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key
from flwr.server import LegacyContext, ServerApp, ServerConfig
from flwr.server.strategy import DifferentialPrivacyClientSideFixedClipping, FedAvg
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

from flower_app import DIM_IN, DIM_OUT, SAMPLES, client_data, dropped, mse
from taskcodec.fl.flower_secure import SecureCompressedStrategy, secure_compression_mod

ROUNDS = 6
#: The strategy's settings per method (the tests replay the sketch server with them).
SETTINGS = {"support": {"ratio": 0.3, "dense_below": 16, "warmup": 0, "server_momentum": 0.0},
            "sketch": {"ratio": 1.0, "rows": 5, "k_ratio": 0.05},
            # the defaults' server momentum, with the steps sent through a top-k downlink
            "support-down": {"ratio": 0.3, "dense_below": 16, "warmup": 0,
                             "downlink": {"ratio": 0.3, "values": "int8"}},
            # two values a SecAgg+ field element (the field widened for them)
            "support-packed": {"ratio": 0.3, "dense_below": 16, "warmup": 0, "server_momentum": 0.0,
                               "pack_range": 4.0}}
#: SecAgg+'s quantization and modulus ranges: Flower's defaults, or wider ones for packing.
FIELD = {"default": (2 ** 22, 2 ** 32), "packed": (2 ** 30, 2 ** 40)}
#: Method "support-dp": Flower's central DP with client-side clipping around the strategy.
DP_CLIP, DP_NOISE = 10.0, 0.01


def _spy_dir() -> str:
    return os.environ.get("TASKCODEC_SPY_DIR", "")


def _round(msg: Message) -> int:
    return int(msg.metadata.group_id)


def vector_spy(msg: Message, context: Context, call_next) -> Message:
    """Inside SecAgg+: saves the compressed vector this client made."""
    reply = call_next(msg, context)
    if _spy_dir() and "fitres.parameters" in reply.content.array_records and not reply.has_error():
        rec = reply.content.array_records["fitres.parameters"]
        vec = next(iter(rec.values())).numpy()
        part = int(context.node_config["partition-id"])
        np.save(os.path.join(_spy_dir(), f"vec-{_round(msg)}-{part}.npy"), vec)
    return reply


def masked_spy(msg: Message, context: Context, call_next) -> Message:
    """Outside SecAgg+: saves the masked vector that leaves this client."""
    from flwr.common import bytes_to_ndarray

    reply = call_next(msg, context)
    cfg = reply.content.config_records.get(RECORD_KEY_CONFIGS) if not reply.has_error() else None
    if _spy_dir() and cfg is not None and Key.MASKED_PARAMETERS in cfg:
        arrays = [bytes_to_ndarray(b) for b in cfg[Key.MASKED_PARAMETERS]]
        part = int(context.node_config["partition-id"])
        np.save(os.path.join(_spy_dir(), f"masked-{_round(msg)}-{part}.npy"), arrays[1])  # [0]: the weight
    return reply


class Client(NumPyClient):
    def __init__(self, part: int, drop: bool = True) -> None:
        self.part, self.drop = part, drop

    def fit(self, parameters, config):
        rnd = int(config["server-round"])
        if self.drop and dropped(rnd, self.part):
            raise RuntimeError(f"client {self.part} drops out of round {rnd}")
        w, b = parameters[0].copy(), parameters[1].copy()
        x, y = client_data(self.part)
        for _ in range(5):
            err = x @ w + b - y
            w -= 0.05 * (x.T @ err) / SAMPLES
            b -= 0.05 * err.mean(axis=0)
        return [w, b], SAMPLES, {}


def make_client_app(secagg: bool = True, dp: bool = False) -> ClientApp:
    """With ``dp``: Flower's fixedclipping_mod clips the update before compression, and no
    client drops out (Flower's DP wrapper skips rounds with failures)."""
    mods = [masked_spy, secaggplus_mod] if secagg else []
    mods += [vector_spy, secure_compression_mod()] + ([fixedclipping_mod] if dp else [])
    return ClientApp(client_fn=lambda context: Client(int(context.node_config["partition-id"]), drop=not dp).to_client(),
                     mods=mods)


def check_unpacked(spy: str, rnd: int, survivors: list, k: int = 123, sampled: int = 10) -> np.ndarray:
    """The mean the packed server unpacked in round ``rnd`` (``sampled`` clients asked, the
    packing's headroom) from SecAgg+'s aggregate; checked
    equal to the mean of the survivors' own vectors, each unpacked alone (SecAgg+'s aggregate
    of one client is that client's vector)."""
    from taskcodec.fl.packing import FieldPacking

    levels, modulus = FIELD["packed"]
    packing = FieldPacking(clipping_range=8.0, quantization_range=levels, modulus_range=modulus,
                           max_weight=2.0 * SAMPLES, clients=sampled)
    step = float(np.load(os.path.join(spy, f"packstep-{rnd}.npy")))
    each = [packing.decode(np.load(os.path.join(spy, f"vec-{rnd}-{p}.npy")), k, step, [SAMPLES]) for p in survivors]
    mean = packing.decode(np.load(os.path.join(spy, f"agg-{rnd}.npy")), k, step, [SAMPLES] * len(survivors))
    # one unit of one client would be step / (0.5 * survivors) off; float32 rounding is far less
    np.testing.assert_allclose(mean, np.mean(each, axis=0), rtol=0, atol=1e-3 * step)
    return mean


class Recording(SecureCompressedStrategy):
    """Keeps the aggregate that SecAgg+ revealed each round."""

    def aggregate_fit(self, server_round, results, failures):
        if results and _spy_dir():
            from flwr.common import parameters_to_ndarrays

            np.save(os.path.join(_spy_dir(), f"agg-{server_round}.npy"),
                    parameters_to_ndarrays(results[0][1].parameters)[0])
            np.save(os.path.join(_spy_dir(), f"packstep-{server_round}.npy"), np.float64(self._pack_step))
            if self._support is not None:
                np.save(os.path.join(_spy_dir(), f"support-{server_round}.npy"), self._support)
        return super().aggregate_fit(server_round, results, failures)


def make_server_app(method: str = "support", nodes: int = 10, rounds: int = ROUNDS, secagg: bool = True,
                    out: str = "") -> ServerApp:
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        xs, ys = zip(*(client_data(p) for p in range(nodes)))
        x, y = np.concatenate(xs), np.concatenate(ys)
        losses = []

        def evaluate(server_round, arrays, cfg):
            losses.append(mse(arrays[0], arrays[1], x, y))
            if _spy_dir():
                np.save(os.path.join(_spy_dir(), f"model-{server_round}.npy"),
                        np.concatenate([a.reshape(-1) for a in arrays]))
            return losses[-1], {}

        init = [np.zeros((DIM_IN, DIM_OUT), np.float32), np.zeros(DIM_OUT, np.float32)]
        inner = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=2, min_available_clients=nodes,
                       initial_parameters=ndarrays_to_parameters(init), evaluate_fn=evaluate,
                       on_fit_config_fn=lambda r: {"server-round": r})
        dp = method.endswith("-dp")
        key = method.removesuffix("-dp")
        t, m = FIELD["packed" if key.endswith("-packed") else "default"]
        fit = SecAggPlusWorkflow(num_shares=nodes, reconstruction_threshold=max(2, nodes // 2),
                                 max_weight=2.0 * SAMPLES, timeout=120, quantization_range=t,
                                 modulus_range=m) if secagg else None
        strategy = Recording(inner, method=key.removesuffix("-down").removesuffix("-packed"), seed=1,
                             **SETTINGS[key], **({"secagg": fit} if key.endswith("-packed") else {}))
        outer = DifferentialPrivacyClientSideFixedClipping(strategy, noise_multiplier=DP_NOISE,
                                                           clipping_norm=DP_CLIP, num_sampled_clients=nodes) \
            if dp else strategy
        ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds), strategy=outer)
        (DefaultWorkflow(fit_workflow=fit) if fit else DefaultWorkflow())(grid, ctx)
        path = out or str(context.run_config.get("out", ""))
        if path:
            with open(path, "w") as f:
                json.dump({"losses": losses, "downlink_frames": strategy.downlink_frames,
                           "uplink_values": strategy.uplink_values}, f)

    return app


def simulate(out: str, method: str, secagg: bool) -> None:
    from flwr.simulation import run_simulation

    run_simulation(server_app=make_server_app(method, secagg=secagg, out=out),
                   client_app=make_client_app(secagg, dp=method.endswith("-dp")), num_supernodes=10,
                   backend_config={"client_resources": {"num_cpus": 1},
                                   "init_args": {"num_cpus": 2, "include_dashboard": False}})


if __name__ == "__main__":
    import sys

    # secure_app.py OUT METHOD [--plain]: METHOD support, sketch, support-down, support-packed or support-dp;
    # SecAgg+ unless --plain
    simulate(sys.argv[1], sys.argv[2], "--plain" not in sys.argv[3:])
