"""A tiny Flower app for the tests: least squares on synthetic per-client data.

Ten clients each hold 64 samples of y = x W* + noise (x in R^40, y in R^10); a train step
is a few full-batch gradient steps. Clients whose partition is listed in the run config
``drop`` fail their train message in that round (dropout); ``corrupt`` names one
(round, partition) whose compressed frame is damaged on the way out.
"""

from __future__ import annotations

import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from taskcodec.fl.flower import UPDATE_KEY, CompressedStrategy, compression_mod

DIM_IN, DIM_OUT, SAMPLES = 40, 10, 64
W_TRUE = np.random.default_rng(123).standard_normal((DIM_IN, DIM_OUT)).astype(np.float32)
ROUNDS = 8
DROP_RATE = 0.3
RESULTS: dict = {}


def client_data(partition: int):
    rng = np.random.default_rng(1000 + partition)
    x = rng.standard_normal((SAMPLES, DIM_IN)).astype(np.float32)
    y = x @ W_TRUE + 0.01 * rng.standard_normal((SAMPLES, DIM_OUT)).astype(np.float32)
    return x, y


def mse(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((x @ w + b - y) ** 2))


def dropped(server_round: int, partition: int) -> bool:
    """30 % of the clients fail each round (a fixed pseudo-random choice per round)."""
    return np.random.default_rng(server_round * 7919 + partition).random() < DROP_RATE


def frames_expected(nodes: int, rounds: int) -> dict:
    """Train messages that carry downlink frames per round: none in round 1 (first contact),
    then one per node whose update of the round before arrived intact (not dropped out, and
    not the corrupted frame of partition 3 in round 2)."""
    expected = {1: 0}
    for rnd in range(2, rounds + 1):
        expected[rnd] = sum(not dropped(rnd - 1, p) and (rnd - 1, p) != (2, 3) for p in range(nodes))
    return expected


def corrupt_mod(msg: Message, context: Context, call_next) -> Message:
    """Damages the frame of partition 3 in round 2 (after compression: mods run outside in)."""
    reply = call_next(msg, context)
    part = int(context.node_config["partition-id"])
    rnd = int(msg.content["config"]["server-round"]) if "config" in msg.content else -1
    if msg.metadata.message_type == "train" and part == 3 and rnd == 2 and UPDATE_KEY in reply.content:
        frame = bytearray(reply.content[UPDATE_KEY]["frame"])
        frame[len(frame) // 2] ^= 0xFF
        reply.content[UPDATE_KEY]["frame"] = bytes(frame)
    return reply


def make_client_app(**compressor_args) -> ClientApp:
    mods = [corrupt_mod, compression_mod(**compressor_args)] if compressor_args else []
    app = ClientApp(mods=mods)

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        part = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        if dropped(rnd, part):
            raise RuntimeError(f"client {part} drops out of round {rnd}")
        rec = msg.content["arrays"]
        w, b = rec["w"].numpy().copy(), rec["b"].numpy().copy()
        x, y = client_data(part)
        for _ in range(5):
            err = x @ w + b - y
            w -= 0.05 * (x.T @ err) / SAMPLES
            b -= 0.05 * err.mean(axis=0)
        out = RecordDict({"arrays": ArrayRecord({"w": Array(w), "b": Array(b)}),
                          "metrics": MetricRecord({"num-examples": SAMPLES, "loss": mse(w, b, x, y)})})
        return Message(content=out, reply_to=msg)

    return app


def summarize(strategy, losses) -> dict:
    summary = {"losses": list(losses)}
    if isinstance(strategy, CompressedStrategy):
        summary["dropped"] = {str(r): d for r, d in strategy.dropped.items()}
        summary["uplink_bytes"] = {str(r): b for r, b in strategy.uplink_bytes.items()}
        summary["downlink_bytes"] = {str(r): b for r, b in strategy.downlink_bytes.items()}
        summary["downlink_frames"] = {str(r): n for r, n in strategy.downlink_frames.items()}
    return summary


def make_server_app(compressed: bool, nodes: int = 10, rounds: int = ROUNDS, downlink=None) -> ServerApp:
    """Waits for ``nodes`` SuperNodes (partitions 0..nodes-1), runs ``rounds`` rounds of FedAvg
    (``downlink``: the strategy wrapper's downlink compressor arguments, or None).

    With a run-config value ``out`` (deployment), the summary is written there as JSON.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        inner = FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=2, min_available_nodes=nodes)
        strategy = CompressedStrategy(inner, downlink=downlink) if compressed else inner
        xs, ys = zip(*(client_data(p) for p in range(nodes)))
        x, y = np.concatenate(xs), np.concatenate(ys)
        losses = []

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            losses.append(mse(arrays["w"].numpy(), arrays["b"].numpy(), x, y))
            return MetricRecord({"mse": losses[-1]})

        init = ArrayRecord({"w": Array(np.zeros((DIM_IN, DIM_OUT), np.float32)),
                            "b": Array(np.zeros(DIM_OUT, np.float32))})
        strategy.start(grid=grid, initial_arrays=init, num_rounds=rounds, evaluate_fn=evaluate, timeout=120)
        RESULTS["losses"] = losses
        RESULTS["strategy"] = strategy
        out = context.run_config.get("out")
        if out:
            import json

            with open(str(out), "w") as f:
                json.dump(summarize(strategy, losses), f)

    return app


def simulate(compressed: bool, out_path: str, downlink=None, **compressor_args) -> None:
    """Runs the app in Flower's simulation engine (10 SuperNodes) and writes a JSON summary."""
    import json

    from flwr.simulation import run_simulation

    RESULTS.clear()
    run_simulation(
        server_app=make_server_app(compressed, downlink=downlink),
        client_app=make_client_app(**compressor_args),
        num_supernodes=10,
        backend_config={"client_resources": {"num_cpus": 1},
                        "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    summary = summarize(RESULTS.get("strategy"), RESULTS.get("losses", []))
    with open(out_path, "w") as f:
        json.dump(summary, f)


if __name__ == "__main__":
    import sys

    # flower_app.py OUT [--downlink]: the downlink compressed too (10 % of the values, int8).
    down = {"ratio": 0.1, "values": "int8"} if "--downlink" in sys.argv[2:] else None
    simulate(True, sys.argv[1], downlink=down, ratio=0.1, values="int8")
