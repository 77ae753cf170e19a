#!/usr/bin/env python
"""Federated Fashion-MNIST under secure aggregation: dense FedAvg, dense SecAgg+, shared-support
SecAgg+, count-sketch SecAgg+ and (non-secure) top-k, in Flower's simulation engine, one run.

The setup of ``bench/fl_fmnist.py``: ten clients, IID and Dirichlet(0.5) partitions, the
784-200-10 MLP (159 k parameters), one local epoch of SGD (batch 64, momentum 0.9, lr 0.02)
per round, every client in every round, FedAvg weighted by sample counts. Configs:

* ``dense-fedavg``: Flower's FedAvg (legacy strategy, ``DefaultWorkflow``), dense float32;
* ``dense-secagg``: the same under Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``;
* ``support-secagg``: ``SecureCompressedStrategy(method="support")`` + ``secure_compression_mod``
  inside SecAgg+ (shared support, 8 % of the parameters after a 4-round warm-up, server
  momentum 0.7, two 13-bit values a SecAgg+ field element (``--pack-slots``; SecAgg+'s
  quantization range 2^30 and modulus 2^40 for it); the steps go down as 10 % top-k int8 frames);
* ``sketch-secagg``: the same with ``method="sketch"`` (FetchSGD count sketch, 5 % of them;
  exact sparse steps down);
* ``topk``: today's ``CompressedStrategy`` + ``compression_mod`` (2 %, sign; dense downlink;
  not secure).

SecAgg+ hands the server a float64 model (Flower dequantizes to float64), so dense SecAgg+'s
downloads after the first round are twice those of dense FedAvg; the compressed configs keep the
model's float32. Bytes are measured on the server's Grid: every reply's content serialized as Flower sends it
(protobuf). For SecAgg+ configs the reply of the "collect masked vectors" stage is the payload;
the setup, share-keys and unmask replies are the key-sharing messages, counted separately and in
the total; downlink bytes are every message the server sends a client in a round (all stages).
Link time: one client's upload at 250 kB/s plus its download at 500 kB/s per round.

``--drop P``: each client fails its training with probability P in every round (SecAgg+
reconstructs the masks of the clients that drop out).

Run: python bench/fl_secagg.py [--rounds 60] [--seeds 0 1] [--partitions iid dir0.5]
         [--configs ...] [--json PATH] [--out DIR]
     python bench/fl_secagg.py --from-json DIR/fl_secagg.json --out DIR   (tables and plot again)
     python bench/fl_secagg.py --from-summary RUN.txt --out DIR   (tables from a run's printed lines)
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine  # noqa: E402

UP_B_S, DOWN_B_S = 250_000, 500_000
CONFIGS = ("dense-fedavg", "dense-secagg", "support-secagg", "sketch-secagg", "topk")
SETTINGS: Dict = {}  # what the apps read (set before the simulation starts; Ray workers get it by env)
RESULT: Dict = {}


def settings() -> Dict:
    if not SETTINGS:
        SETTINGS.update(json.loads(os.environ["TASKCODEC_SECAGG_BENCH"]))
    return SETTINGS


_DATA: Dict = {}


def data():
    if not _DATA:
        import fl_fmnist

        s = settings()
        xtr, ytr, xte, yte = fl_fmnist.load_fmnist(s.get("data"))
        alpha = 0.0 if s["partition"] == "iid" else float(s["partition"].removeprefix("dir"))
        parts = fl_fmnist.partition(ytr, s["clients"], alpha, np.random.default_rng(s["seed"]))
        if s.get("samples"):
            parts = [p[: s["samples"]] for p in parts]
        _DATA.update(xtr=xtr, ytr=ytr, xte=xte, yte=yte, parts=parts)
    return _DATA


def model_and_arrays(arrays=None):
    import torch

    import fl_fmnist

    torch.set_num_threads(1)
    torch.manual_seed(settings()["seed"])
    model = fl_fmnist.make_model(1, torch, "mlp")
    model(torch.zeros(1, 1, 28, 28))
    if arrays is not None:
        with torch.no_grad():
            for p, a in zip(model.parameters(), arrays):
                p.copy_(torch.from_numpy(np.asarray(a, np.float32)).reshape(p.shape))
    return model


def local_train(arrays: List[np.ndarray], part: int, rnd: int) -> List[np.ndarray]:
    import torch

    d = data()
    model = model_and_arrays(arrays)
    opt = torch.optim.SGD(model.parameters(), lr=settings()["lr"], momentum=0.9)
    rng = np.random.default_rng([settings()["seed"], part, rnd])
    order = rng.permutation(d["parts"][part])
    for b in range(0, len(order), 64):
        bi = order[b:b + 64]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.from_numpy(d["xtr"][bi])), torch.from_numpy(d["ytr"][bi])).backward()
        opt.step()
    return [p.detach().numpy().copy() for p in model.parameters()]


def drops(part: int, rnd: int) -> bool:
    p = settings().get("drop", 0.0)
    return p > 0 and np.random.default_rng([settings()["seed"], 7919, part, rnd]).random() < p


def accuracy(arrays: List[np.ndarray]) -> float:
    import torch

    d = data()
    model = model_and_arrays(arrays)
    with torch.no_grad():
        pred = model(torch.from_numpy(d["xte"])).argmax(1).numpy()
    return float((pred == d["yte"]).mean())


# ---- the apps -------------------------------------------------------------------------------

def legacy_client_app(config: str):
    from flwr.client import ClientApp, NumPyClient
    from flwr.client.mod import secaggplus_mod

    from taskcodec.fl.flower_secure import secure_compression_mod

    class Client(NumPyClient):
        def __init__(self, part: int) -> None:
            self.part = part

        def fit(self, parameters, config):
            rnd = int(config["server-round"])
            if drops(self.part, rnd):
                raise RuntimeError(f"client {self.part} drops out of round {rnd}")
            return local_train(parameters, self.part, rnd), len(data()["parts"][self.part]), {}

    def client_fn(context):
        return Client(int(context.node_config["partition-id"])).to_client()

    mods = []
    if "secagg" in config:
        mods.append(secaggplus_mod)
    if config in ("support-secagg", "sketch-secagg"):
        mods.append(secure_compression_mod())
    return ClientApp(client_fn=client_fn, mods=mods)


class MeteredGrid:
    """The server's Grid, with the serialized size of every reply recorded per round and stage."""

    def __init__(self, grid, log: Dict) -> None:
        self._grid, self.log = grid, log

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout=None):
        from flwr.common.serde import recorddict_to_proto

        messages = list(messages)
        if not messages:
            return self._grid.send_and_receive(messages, timeout=timeout)
        # one call is one SecAgg+ stage (or a plain train round): the first message says which
        cfg = messages[0].content.config_records.get("secaggplus_configs") or {}
        stage = str(cfg.get("stage", "train"))
        rnd = messages[0].metadata.group_id
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        entry = self.log.setdefault(str(rnd), {})
        for r in replies:
            if r.has_error():
                continue
            size = recorddict_to_proto(r.content).ByteSize()
            entry.setdefault(stage, []).append(size)
        for m in messages:  # everything the server sends, per node taking part in the round
            entry["down"] = entry.get("down", 0) + recorddict_to_proto(m.content).ByteSize()
            if stage in ("train", "collect_masked_vectors"):
                entry["down_msgs"] = entry.get("down_msgs", 0) + 1
        return replies


def secagg_workflow(s: Dict, packed: bool):
    """Flower's SecAgg+ workflow; ``packed``: quantization range 2^30 and modulus 2^40 (room
    for two 13-bit values an element for ten clients) instead of Flower's 2^22 and 2^32."""
    from flwr.server.workflow import SecAggPlusWorkflow

    field = {"quantization_range": 2 ** 30, "modulus_range": 2 ** 40} if packed else {}
    return SecAggPlusWorkflow(num_shares=s["clients"], reconstruction_threshold=max(2, (s["clients"] * 6) // 10),
                              max_weight=float(max(len(p) for p in data()["parts"])) * 1.5, **field)


def legacy_server_app(config: str):
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerApp, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.server.workflow import DefaultWorkflow

    from taskcodec.fl.flower_secure import SecureCompressedStrategy

    s = settings()
    app = ServerApp()

    @app.main()
    def main(grid, context) -> None:
        acc: List[float] = []

        def evaluate(server_round, arrays, cfg):
            if server_round > 0:
                acc.append(accuracy(arrays))
            return 0.0, {}

        init = [p.detach().numpy().copy() for p in model_and_arrays().parameters()]
        inner = FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=2, min_available_clients=s["clients"],
                       initial_parameters=ndarrays_to_parameters(init), evaluate_fn=evaluate,
                       on_fit_config_fn=lambda r: {"server-round": r})
        strategy = inner
        packed = config == "support-secagg" and s["pack_slots"] > 1
        fit = secagg_workflow(s, packed) if "secagg" in config else None
        if config == "support-secagg":
            strategy = SecureCompressedStrategy(inner, method="support", ratio=s["support_ratio"], seed=s["seed"],
                                                secagg=fit if packed else None, pack_slots=s["pack_slots"],
                                                downlink={"ratio": 0.1, "values": "int8"})
        elif config == "sketch-secagg":
            strategy = SecureCompressedStrategy(inner, method="sketch", ratio=s["sketch_ratio"],
                                                seed=s["seed"])
        ctx = LegacyContext(context=context, config=ServerConfig(num_rounds=s["rounds"]), strategy=strategy)
        workflow = DefaultWorkflow(fit_workflow=fit) if fit is not None else DefaultWorkflow()
        log: Dict = {}
        workflow(MeteredGrid(grid, log), ctx)
        RESULT.update(accuracy=acc, wire=log)
        if isinstance(strategy, SecureCompressedStrategy):
            RESULT.update(downlink_frames=strategy.downlink_frames)

    return app


def topk_apps():
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import ServerApp
    from flwr.serverapp.strategy import FedAvg

    from taskcodec.fl.flower import CompressedStrategy, compression_mod

    s = settings()
    capp = ClientApp(mods=[compression_mod(ratio=0.02, values="sign")])

    @capp.train()
    def train(msg, context):
        part = int(context.node_config["partition-id"])
        rnd = int(msg.content["config"]["server-round"])
        if drops(part, rnd):
            raise RuntimeError(f"client {part} drops out of round {rnd}")
        rec = msg.content["arrays"]
        arrays = [rec[k].numpy() for k in rec.keys()]
        out = local_train(arrays, part, rnd)
        content = RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in zip(rec.keys(), out)}),
                              "metrics": MetricRecord({"num-examples": len(data()["parts"][part])})})
        return Message(content=content, reply_to=msg)

    sapp = ServerApp()

    @sapp.main()
    def main(grid, context) -> None:
        acc: List[float] = []

        def evaluate(server_round, arrays):
            if server_round > 0:
                acc.append(accuracy([arrays[k].numpy() for k in arrays.keys()]))
            return MetricRecord({})

        init = ArrayRecord({str(i): Array(p.detach().numpy().copy())
                            for i, p in enumerate(model_and_arrays().parameters())})
        strategy = CompressedStrategy(FedAvg(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=2,
                                             min_available_nodes=s["clients"]))
        log: Dict = {}
        strategy.start(grid=MeteredGrid(grid, log), initial_arrays=init, num_rounds=s["rounds"],
                       evaluate_fn=evaluate)
        RESULT.update(accuracy=acc, wire=log)

    return sapp, capp


def simulate(config: str) -> Dict:
    """One config in Flower's simulation engine, with the settings of the environment."""
    from flwr.simulation import run_simulation

    RESULT.clear()
    if config == "topk":
        server_app, client_app = topk_apps()
    else:
        server_app, client_app = legacy_server_app(config), legacy_client_app(config)
    run_simulation(server_app=server_app, client_app=client_app, num_supernodes=settings()["clients"],
                   backend_config={"client_resources": {"num_cpus": 1},
                                   "init_args": {"num_cpus": settings()["cpus"], "include_dashboard": False}})
    return dict(RESULT)


def summarize(res: Dict, dense_bytes: int) -> Dict:
    """Per client and round: payload, key-sharing and total uplink bytes, download bytes."""
    rounds = sorted(res["wire"], key=lambda r: int(r) if r.isdigit() else 0)
    payload, keys, down, replies = [], [], [], []
    for r in rounds:
        e = res["wire"][r]
        pay = e.get("collect_masked_vectors", e.get("train", []))
        if not pay:
            continue
        k = sum(sum(e.get(st, [])) for st in ("setup", "share_keys", "unmask"))
        payload.append(float(np.mean(pay)))
        keys.append(k / len(pay))
        down.append(e.get("down", 0) / max(1, e.get("down_msgs", 1)))
        replies.append(len(pay))
    acc = res["accuracy"]
    up = float(np.mean(payload)) + float(np.mean(keys))
    return {
        "uplink_bytes_per_client_round": int(round(up)),
        "uplink_payload_bytes_per_client_round": int(round(np.mean(payload))),
        "uplink_keyshare_bytes_per_client_round": int(round(np.mean(keys))),
        "downlink_bytes_per_client_round": int(round(np.mean(down))),
        "final_accuracy": acc[-1] if acc else None,
        "accuracy": acc,
        "replies_per_round": replies,
        "link_s_per_round": up / UP_B_S + float(np.mean(down)) / DOWN_B_S,
        "dense_float32_bytes": dense_bytes,
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=60)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--partitions", nargs="+", default=["iid", "dir0.5"])
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--samples-per-client", type=int, default=0, help="cap per client (0: all)")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--support-ratio", type=float, default=0.08)
    ap.add_argument("--pack-slots", type=int, default=2, help="shared-support values a SecAgg+ field element (1: none)")
    ap.add_argument("--sketch-ratio", type=float, default=0.05)
    ap.add_argument("--drop", type=float, default=0.0, help="probability that a client drops out of a round")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--data", default=None)
    ap.add_argument("--json", default=None, help="write the results here (default: OUT/fl_secagg.json)")
    ap.add_argument("--from-summary", metavar="TXT",
                    help="only the tables again, from the per-run lines a run printed (its JSON lost): "
                    "accuracy and uplink bytes, no downlink or link time")
    ap.add_argument("--from-json", metavar="JSON",
                    help="no training: the tables and the plot again from a saved fl_secagg.json, to --out")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    if args.from_summary:
        runs = read_summary(Path(args.from_summary))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        report({"runs": runs, **tables(runs)}, Path(args.out))
        return 0
    if args.from_json:
        result = json.loads(Path(args.from_json).read_text())
        result.update(tables(result["runs"]))
        result["args"] = {k: v for k, v in result["args"].items() if k not in ("out", "json", "from_json", "data")}
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "fl_secagg.json").write_text(json.dumps(result, indent=1))
        report(result, Path(args.out))
        return 0
    # Flower's simulation runs the ClientApps in Ray workers: they import this folder's modules.
    here = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    machine = describe_machine()
    t0 = time.time()
    runs: List[Dict] = []
    kept = {k: v for k, v in vars(args).items() if k not in ("out", "json", "from_json", "data")}
    path = Path(args.json) if args.json else out / "fl_secagg.json"

    def save(done: bool) -> Dict:
        """The results so far (written after every run, so that a run cut short keeps them)."""
        result = {"benchmark": "fl_secagg", "args": kept, "runs": runs, "machine": machine,
                  "wall_s": time.time() - t0, "complete": done, **tables(runs),
                  "target": ">= 20x fewer uplink payload bytes than dense SecAgg+ at <= 1 point accuracy loss "
                            "against dense FedAvg (IID and Dirichlet 0.5, worst seed)"}
        path.write_text(json.dumps(result, indent=1))
        return result

    for seed in args.seeds:
        for pname in args.partitions:
            for config in args.configs:
                s = {"seed": seed, "partition": pname, "rounds": args.rounds, "clients": args.clients,
                     "samples": args.samples_per_client, "lr": args.lr, "support_ratio": args.support_ratio,
                     "pack_slots": args.pack_slots, "sketch_ratio": args.sketch_ratio, "drop": args.drop, "cpus": args.cpus, "data": args.data}
                os.environ["TASKCODEC_SECAGG_BENCH"] = json.dumps(s)
                SETTINGS.clear()
                _DATA.clear()
                t = time.time()
                res = simulate(config)
                dense = 4 * sum(p.numel() for p in model_and_arrays().parameters())
                row = dict(summarize(res, dense), config=config, seed=seed, partition=pname,
                           wall_s=time.time() - t)
                runs.append(row)
                print(f"  seed {seed} {pname:>6} {config:>15}: acc {row['final_accuracy']:.4f}, uplink/client/round "
                      f"{row['uplink_bytes_per_client_round'] / 1e3:.1f} kB (payload "
                      f"{row['uplink_payload_bytes_per_client_round'] / 1e3:.1f} kB), {row['wall_s']:.0f} s", flush=True)
                save(False)
    report(save(True), out)
    return 0


def table(runs: List[Dict]) -> Dict:
    """Per config: mean over runs of the byte counts, mean final accuracy, the worst loss against
    dense FedAvg of the same partition and seed, and the smallest payload ratio against dense
    SecAgg+ of the same partition and seed."""
    ref = {(r["partition"], r["seed"]): r["final_accuracy"] for r in runs if r["config"] == "dense-fedavg"}
    sec = {(r["partition"], r["seed"]): r["uplink_payload_bytes_per_client_round"]
           for r in runs if r["config"] == "dense-secagg"}
    out: Dict = {}
    for name in dict.fromkeys(r["config"] for r in runs):
        rs = [r for r in runs if r["config"] == name]
        row = {k: int(round(np.mean([r[k] for r in rs]))) for k in
               ("uplink_bytes_per_client_round", "uplink_payload_bytes_per_client_round",
                "uplink_keyshare_bytes_per_client_round", "downlink_bytes_per_client_round")
               if all(k in r for r in rs)}  # a printed summary holds no downlink
        row["final_accuracy"] = float(np.mean([r["final_accuracy"] for r in rs]))
        if all("link_s_per_round" in r for r in rs):
            row["link_s_per_round"] = float(np.mean([r["link_s_per_round"] for r in rs]))
        row["runs"] = len(rs)
        losses = [ref[(r["partition"], r["seed"])] - r["final_accuracy"] for r in rs if (r["partition"], r["seed"]) in ref]
        if losses:
            row["worst_loss_points"] = 100 * max(losses)
        ratios = [sec[(r["partition"], r["seed"])] / r["uplink_payload_bytes_per_client_round"]
                  for r in rs if (r["partition"], r["seed"]) in sec]
        if ratios:
            row["payload_vs_dense_secagg"] = float(min(ratios))
        out[name] = row
    return out


def read_summary(path: Path) -> List[Dict]:
    """The runs of the per-run lines ``main`` prints (bytes to the printed 0.1 kB)."""
    import re

    line = re.compile(r"\s*seed (\d+)\s+(\S+)\s+(\S+): acc ([\d.]+), uplink/client/round ([\d.]+) kB "
                      r"\(payload ([\d.]+) kB\)")
    runs = []
    for m in filter(None, map(line.match, path.read_text().splitlines())):
        up, pay = round(float(m[5]) * 1e3), round(float(m[6]) * 1e3)
        runs.append({"seed": int(m[1]), "partition": m[2], "config": m[3], "final_accuracy": float(m[4]),
                     "uplink_bytes_per_client_round": up, "uplink_payload_bytes_per_client_round": pay,
                     "uplink_keyshare_bytes_per_client_round": up - pay})
    return runs


def tables(runs: List[Dict]) -> Dict:
    """``configs`` over every run, and ``by_partition``: the same per partition."""
    parts = list(dict.fromkeys(r["partition"] for r in runs))
    return {"configs": table(runs), "by_partition": {p: table([r for r in runs if r["partition"] == p]) for p in parts}}


def report(result: Dict, out: Path) -> None:
    lines = ["| split | config | uplink / client / round (payload + key sharing) | payload vs dense SecAgg+ | "
             "downlink / client / round | final accuracy (mean) | loss vs dense FedAvg (worst seed) | "
             "link time / round | runs |", "|---|---|---|---|---|---|---|---|---|"]
    for pname, rows in result["by_partition"].items():
        for name, r in rows.items():
            ratio = r.get("payload_vs_dense_secagg")
            loss = r.get("worst_loss_points")
            down, link = r.get("downlink_bytes_per_client_round"), r.get("link_s_per_round")
            lines.append(
                f"| {pname} | {name} | {r['uplink_bytes_per_client_round'] / 1e3:.1f} kB "
                f"({r['uplink_payload_bytes_per_client_round'] / 1e3:.1f} + "
                f"{r['uplink_keyshare_bytes_per_client_round'] / 1e3:.1f}) | "
                f"{'—' if ratio is None else f'{ratio:.1f}×'} | {'—' if down is None else f'{down / 1e3:.1f} kB'} | "
                f"{100 * r['final_accuracy']:.2f} % | {'—' if name == 'dense-fedavg' or loss is None else f'{loss:+.2f} pt'} | "
                f"{'—' if link is None else f'{link:.2f} s'} | {r['runs']} |")
    text = "\n".join(lines)
    print(text)
    (out / "fl_secagg.md").write_text(text + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    if not all("accuracy" in r for r in result["runs"]):  # no curves in a printed summary
        return
    parts = sorted({r["partition"] for r in result["runs"]})
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 4), squeeze=False)
    for ax, pname in zip(axes[0], parts):
        for name in result["configs"]:
            rs = [r for r in result["runs"] if r["config"] == name and r["partition"] == pname]
            if not rs:
                continue
            acc = np.mean([r["accuracy"] for r in rs], axis=0)
            up = np.cumsum([rs[0]["uplink_bytes_per_client_round"]] * len(acc)) / 1e6
            ax.plot(up, 100 * acc, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("uplink MB per client (cumulative)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Fashion-MNIST, 10 clients, {pname}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "fl_secagg.png", dpi=120)


if __name__ == "__main__":
    sys.exit(main())
