#!/usr/bin/env python
"""Federated Fashion-MNIST: dense FedAvg vs taskcodec-compressed uplinks, in one run.

Ten clients, IID and non-IID (Dirichlet alpha = 0.5 over labels) partitions of the 60 k
training images, FedAvg weighted by client sample counts, every client in every round.
Each client trains ``--local-epochs`` of SGD (batch 64, momentum 0.9) on a small model
(``--model mlp``: 784-200-10, 159 k parameters; ``cnn``: two conv layers) from the global
model and uploads its delta; ``--samples-per-client`` caps the local data (a short run). Uplinks:

* dense: the float32 delta (4 bytes a parameter, no framing counted);
* taskcodec: ``tc.fl.TopKCompressor(ratio, values)`` with error feedback on each client
  (the same compressor the Flower mod uses); the server decodes with ``tc.fl.accumulate``
  (as the Flower strategy wrapper does) and adds the weighted mean delta to the model.

Downlinks are the dense float32 model (4 bytes a parameter), unless a config asks for
``down=RATIO/VALUES``: then the server compresses each round's aggregated update with its own
``TopKCompressor`` (error feedback on the server), every client adds the decoded frame to its
copy of the model, and the model evaluated is that copy (what the clients hold). The first
round's download is the dense model in every run. Per round the script records test accuracy
(10 k images), uplink and downlink bytes of the whole round, and transfer time at 250 kB/s up
and 500 kB/s down (one download plus one client's upload, clients on their own links). It ends
with a table and a plot.

Data: Fashion-MNIST IDX files from ``--data`` (default: where ``make data`` put them, found by
``taskcodec.nn.datasets.find_fashion_mnist``; torchvision's ``<root>/FashionMNIST/raw`` works too).
``--dataset cifar10 --data <root>`` runs CIFAR-10 through torchvision where a user has it.

A config is ``dense`` or ``ratio:values[:warmup=N][:momentum=M][:down=RATIO/VALUES]`` (e.g.
``0.01:int8``, ``0.02:sign:warmup=4``, ``0.02:sign:down=0.05/int8``).

Run: python bench/fl_fmnist.py [--rounds 20] [--configs dense 0.01:int8 ...] [--out DIR]
     python bench/fl_fmnist.py --from-json DIR/fl_fmnist.json --out DIR   (tables and plot again)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe_machine, machine_summary  # noqa: E402

UP_B_S, DOWN_B_S = 250_000, 500_000  # bytes per second (250 and 500 kB/s)


def load_fmnist(root: Optional[str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from taskcodec.nn.datasets import load_fashion_mnist

    norm = lambda x: ((x.astype(np.float32) / 255.0 - 0.286) / 0.353)[:, None]  # noqa: E731
    xtr, ytr = load_fashion_mnist("train", root)
    xte, yte = load_fashion_mnist("test", root)
    return norm(xtr), ytr.astype(np.int64), norm(xte), yte.astype(np.int64)


def load_cifar10(root: str):
    import torchvision

    tr = torchvision.datasets.CIFAR10(root, train=True, download=False)
    te = torchvision.datasets.CIFAR10(root, train=False, download=False)
    mean, std = np.array([0.491, 0.482, 0.447], np.float32), np.array([0.247, 0.243, 0.262], np.float32)
    norm = lambda x: ((x.astype(np.float32) / 255.0 - mean) / std).transpose(0, 3, 1, 2).copy()  # noqa: E731
    return norm(tr.data), np.array(tr.targets), norm(te.data), np.array(te.targets)


def partition(y: np.ndarray, clients: int, alpha: float, rng: np.random.Generator) -> List[np.ndarray]:
    """IID split (alpha <= 0) or per-class Dirichlet(alpha) proportions over clients."""
    if alpha <= 0:
        return np.array_split(rng.permutation(len(y)), clients)
    parts: List[List[int]] = [[] for _ in range(clients)]
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        p = rng.dirichlet([alpha] * clients)
        cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
        for k, chunk in enumerate(np.split(idx, cuts)):
            parts[k].extend(chunk.tolist())
    return [np.array(sorted(p), dtype=np.int64) for p in parts]


def make_model(channels: int, torch, kind: str = "mlp"):
    nn = torch.nn
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(200), nn.ReLU(), nn.Linear(200, 10))
    return nn.Sequential(
        nn.Conv2d(channels, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.LazyLinear(64), nn.ReLU(), nn.Linear(64, 10))


def compressor_args(config: str) -> Tuple[Dict, Optional[Dict]]:
    """``ratio:values[:warmup=N][:momentum=M][:down=RATIO/VALUES]`` -> TopKCompressor arguments
    of the clients, and of the server's downlink compressor (None: dense downlink).

    ``warmup=N``: Deep Gradient Compression's warm-up, N rounds whose ratios fall
    geometrically from 25 % towards ``ratio``; ``momentum=M``: momentum correction.
    """
    ratio, values, *opts = config.split(":")
    out: Dict = {"ratio": float(ratio), "values": values}
    down = None
    for opt in opts:
        key, _, val = opt.partition("=")
        if key == "down":
            dratio, _, dvalues = val.partition("/")
            down = {"ratio": float(dratio), "values": dvalues or "int8"}
        elif key == "warmup":
            n = int(val)
            out["warmup_ratios"] = tuple(out["ratio"] * (0.25 / out["ratio"]) ** ((n - i) / n) for i in range(n))
        elif key == "momentum":
            out["momentum"] = float(val)
        else:
            raise SystemExit(f"unknown option {opt!r} in config {config!r}")
    return out, down


def run(config: str, data, parts, args, torch, progress, seed: int, pname: str) -> Dict:
    from taskcodec import fl

    xtr, ytr, xte, yte = data
    torch.manual_seed(seed)
    model = make_model(xtr.shape[1], torch, args.model)
    model(torch.zeros(1, *xtr.shape[1:]))  # materialise the lazy layer
    names = [n for n, _ in model.named_parameters()]
    n_params = sum(p.numel() for p in model.parameters())
    dense = config == "dense"
    comps, down_comp = [], None
    if not dense:
        up_args, down_args = compressor_args(config)
        comps = [fl.TopKCompressor(**up_args, seed=k) for k in range(len(parts))]
        if down_args is not None:
            down_comp = fl.TopKCompressor(**down_args, seed=len(parts))
    down = 4 * n_params  # the first download: the dense initial model
    xte_t, yte_t = torch.from_numpy(xte), torch.from_numpy(yte)
    sizes = np.array([len(p) for p in parts], np.float64)
    weights = sizes / sizes.sum()
    hist = []
    rng = np.random.default_rng(seed)
    bar = progress(range(1, args.rounds + 1), desc=f"{config:>11} {pname} seed {seed}", unit="round", leave=False)
    for rnd in bar:
        glob = {n: p.detach().clone() for n, p in model.named_parameters()}
        deltas, blobs = [], []
        for k, idx in enumerate(parts):
            with torch.no_grad():
                for n, p in model.named_parameters():
                    p.copy_(glob[n])
            opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
            for _ in range(args.local_epochs):
                order = rng.permutation(idx)
                for b in range(0, len(order), 64):
                    bi = order[b:b + 64]
                    opt.zero_grad()
                    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(xtr[bi])), torch.from_numpy(ytr[bi]))
                    loss.backward()
                    opt.step()
            delta = {n: (p.detach() - glob[n]).numpy().copy() for n, p in model.named_parameters()}
            if dense:
                deltas.append(delta)
            else:
                blobs.append(comps[k].compress(delta))
        if dense:
            mean = {n: sum(w * d[n] for w, d in zip(weights, deltas)) for n in names}
            up = [4 * n_params] * len(parts)
        else:
            mean, used, errors = fl.accumulate(blobs, weights)
            assert not errors, errors
            up = [len(b) for b in blobs]
        if down_comp is not None:
            # The server sends its compressed aggregate; clients (and this evaluation) apply
            # what the frame decodes to, the server keeps the rest as its residual.
            frame = down_comp.compress({n: np.asarray(mean[n], np.float32) for n in names})
            mean = fl.decompress(frame)
            next_down = len(frame)
        else:
            next_down = 4 * n_params
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(glob[n] + torch.from_numpy(np.asarray(mean[n], np.float32)))
            correct = 0
            for b in range(0, len(xte_t), 2000):
                correct += int((model(xte_t[b:b + 2000]).argmax(1) == yte_t[b:b + 2000]).sum())
        acc = correct / len(yte_t)
        hist.append({"round": rnd, "accuracy": acc, "uplink_bytes": int(sum(up)), "downlink_bytes": down * len(parts),
                     "transfer_s": max(up) / UP_B_S + down / DOWN_B_S})
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(acc=f"{acc:.3f}", up=f"{np.mean(up)/1e3:.1f}kB", down=f"{down/1e3:.1f}kB")
        down = next_down
    return {"config": config, "params": n_params, "history": hist}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["fmnist", "cifar10"], default="fmnist")
    ap.add_argument("--data", default=None,
                    help="Fashion-MNIST folder (default: the one `make data` provisions) or CIFAR-10 root")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--model", choices=["mlp", "cnn"], default="mlp",
                    help="mlp: 784-200-10 (159 k parameters); cnn: two conv layers + 64 hidden (0.1 M)")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--local-epochs", type=int, default=1)
    ap.add_argument("--samples-per-client", type=int, default=0, help="cap per client (0: all)")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--partitions", nargs="+", default=["iid", "dir0.5"])
    ap.add_argument("--configs", nargs="+", default=["dense", "0.01:int8", "0.003:int8", "0.01:qsgd"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, nargs="+",
                    help="several seeds (instead of --seed): every run repeats per seed; the table gives "
                         "the mean over seeds and the worst seed's accuracy loss")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--from-json", metavar="JSON",
                    help="no training: recompute the tables and the plot from the runs of a saved "
                         "fl_fmnist.json, written to --out")
    args = ap.parse_args(argv)
    if args.from_json:
        report(json.loads(Path(args.from_json).read_text()), Path(args.out))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    data = load_fmnist(args.data) if args.dataset == "fmnist" else load_cifar10(args.data)
    if args.no_progress:
        progress = lambda it, **kw: it  # noqa: E731
    else:
        from tqdm.auto import tqdm as progress
    results = []
    machine = describe_machine()  # before the runs: the commit that ran them
    t0 = time.time()
    seeds = args.seeds or [args.seed]
    for seed in seeds:
        for pname in args.partitions:
            alpha = 0.0 if pname == "iid" else float(pname.removeprefix("dir"))
            parts = partition(data[1], args.clients, alpha, np.random.default_rng(seed))
            if args.samples_per_client:
                parts = [p[: args.samples_per_client] for p in parts]
            for cfg in args.configs:
                r = run(cfg, data, parts, args, torch, progress, seed, pname)
                r["partition"], r["seed"] = pname, seed
                results.append(r)
                h = r["history"][-1]
                print(f"  seed {seed} {pname:>6} {cfg:>20}: acc {h['accuracy']:.4f}, uplink/client/round "
                      f"{h['uplink_bytes'] / args.clients / 1e3:.2f} kB", flush=True)
    args.seeds = seeds
    result = {"benchmark": "fl_fmnist", "dataset": args.dataset,
              "args": {k: v for k, v in vars(args).items() if k not in ("out", "from_json")},
              "params": results[0]["params"], "links": {"up_B_s": UP_B_S, "down_B_s": DOWN_B_S},
              "runs": results, "machine": machine, "wall_s": time.time() - t0,
              "target": ">= 100x fewer uplink bytes than dense float32 at <= 1 point final-accuracy loss"}
    report(result, Path(args.out))
    return 0


def summarize(runs: List[Dict], args: Dict) -> Tuple[List[Dict], List[Dict]]:
    """Per run, and mean over seeds per (partition, config) with the worst seed's loss. Per
    round figures "after the first" leave out round 1, whose download is the dense model in
    every run."""
    clients = args["clients"]
    summary = []
    for r in runs:
        dense = next((d for d in runs if d["partition"] == r["partition"] and d["config"] == "dense"
                      and d["seed"] == r["seed"]), None)
        hist = r["history"]
        later = hist[1:] or hist
        up = sum(h["uplink_bytes"] for h in hist)
        down = sum(h["downlink_bytes"] for h in hist)
        row = {"seed": r["seed"], "partition": r["partition"], "config": r["config"],
               "final_accuracy": hist[-1]["accuracy"],
               "last5_mean_accuracy": float(np.mean([h["accuracy"] for h in hist[-5:]])),
               "best_accuracy": max(h["accuracy"] for h in hist), "uplink_bytes_total": up,
               "uplink_bytes_per_client_round": up / len(hist) / clients,
               "downlink_bytes_per_client_round": down / len(hist) / clients,
               "downlink_bytes_per_client_round_after_first":
                   float(np.mean([h["downlink_bytes"] for h in later])) / clients,
               "transfer_s_per_round_after_first": float(np.mean([h["transfer_s"] for h in later])),
               "transfer_s_total": sum(h["transfer_s"] for h in hist)}
        if dense is not None:
            dup = sum(h["uplink_bytes"] for h in dense["history"])
            row["uplink_reduction_x"] = dup / up
            row["downlink_reduction_x"] = sum(h["downlink_bytes"] for h in dense["history"]) / down
            row["transfer_speedup_x"] = sum(h["transfer_s"] for h in dense["history"]) / row["transfer_s_total"]
            row["accuracy_loss_points"] = 100 * (dense["history"][-1]["accuracy"] - hist[-1]["accuracy"])
            row["last5_loss_points"] = 100 * (np.mean([h["accuracy"] for h in dense["history"][-5:]])
                                              - row["last5_mean_accuracy"])
        summary.append(row)
    mean_rows = []
    for pname in args["partitions"]:
        for cfg in args["configs"]:
            rows = [x for x in summary if x["partition"] == pname and x["config"] == cfg]
            m = {"partition": pname, "config": cfg, "seeds": len(rows)}
            for key in rows[0]:
                if key not in ("seed", "partition", "config") and all(key in x for x in rows):
                    m[key] = float(np.mean([x[key] for x in rows]))
            if "accuracy_loss_points" in m:
                m["worst_accuracy_loss_points"] = float(max(x["accuracy_loss_points"] for x in rows))
            mean_rows.append(m)
    return summary, mean_rows


def report(result: Dict, out: Path) -> None:
    """Summaries into ``result``, then fl_fmnist.json, the tables and fl_fmnist.png in ``out``."""
    args = result["args"]
    result["summary"], result["summary_mean"] = summarize(result["runs"], args)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fl_fmnist.json").write_text(json.dumps(result, indent=2))

    nan = float("nan")
    print(f"\nFederated {result['dataset']}: {args['clients']} clients, {args['rounds']} rounds, "
          f"{result['params']:,} parameters, seeds {args['seeds']}; {machine_summary(result['machine'])}")
    print("(down and link: per round after the first, whose download is the dense model in every run)")
    print(f"{'seed':>4} {'partition':>9} {'config':>28} {'final acc':>9} {'loss pts':>8} {'last-5 loss':>11} "
          f"{'up/client/round':>16} {'up fewer':>8} {'down/client/round':>18} {'link/round':>10} "
          f"{'link total':>10}")
    for s in result["summary"]:
        print(f"{s['seed']:>4} {s['partition']:>9} {s['config']:>28} {s['final_accuracy']*100:8.2f}% "
              f"{s.get('accuracy_loss_points', nan):8.2f} {s.get('last5_loss_points', nan):11.2f} "
              f"{s['uplink_bytes_per_client_round']/1e3:13.2f} kB {s.get('uplink_reduction_x', nan):7.1f}x "
              f"{s['downlink_bytes_per_client_round_after_first']/1e3:15.2f} kB "
              f"{s['transfer_s_per_round_after_first']:9.3f}s {s['transfer_s_total']:9.1f}s")
    if len(args["seeds"]) > 1:
        print(f"\nMean over seeds {args['seeds']}:")
        print(f"{'partition':>9} {'config':>28} {'final acc':>9} {'loss pts':>8} {'worst seed':>10} "
              f"{'last-5 loss':>11} {'up fewer':>8} {'down/client/round':>18} {'link/round':>10} "
              f"{'link total':>10} {'faster':>7}")
        for m in result["summary_mean"]:
            print(f"{m['partition']:>9} {m['config']:>28} {m['final_accuracy']*100:8.2f}% "
                  f"{m.get('accuracy_loss_points', nan):8.2f} {m.get('worst_accuracy_loss_points', nan):10.2f} "
                  f"{m.get('last5_loss_points', nan):11.2f} {m.get('uplink_reduction_x', nan):7.1f}x "
                  f"{m['downlink_bytes_per_client_round_after_first']/1e3:15.2f} kB "
                  f"{m['transfer_s_per_round_after_first']:9.3f}s {m['transfer_s_total']:9.1f}s "
                  f"{m.get('transfer_speedup_x', nan):6.1f}x")
    plot(result, out / "fl_fmnist.png")


def plot(result: Dict, path: Path) -> None:
    """Three rows per partition (means over the seeds): accuracy per round, against the bytes
    each client has uploaded, and against the link time so far (250 kB/s up, 500 kB/s down)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args, results, mean_rows = result["args"], result["runs"], result["summary_mean"]
    partitions, clients, seeds = args["partitions"], args["clients"], args["seeds"]
    fig, axes = plt.subplots(3, len(partitions), figsize=(5.5 * len(partitions), 12), squeeze=False)
    for col, pname in enumerate(partitions):
        ax, bx, cx = axes[0][col], axes[1][col], axes[2][col]
        for m in mean_rows:
            if m["partition"] != pname:
                continue
            runs = [r for r in results if r["partition"] == pname and r["config"] == m["config"]]
            fewer = [f"{m[k]:.0f}x fewer {way} bytes" for k, way in
                     (("uplink_reduction_x", "up"), ("downlink_reduction_x", "down")) if m.get(k, 1.0) > 1.01]
            lab = f"{m['config']} ({', '.join(fewer)})" if fewer else m["config"]
            acc = np.mean([[100 * h["accuracy"] for h in r["history"]] for r in runs], axis=0)
            up = np.mean([[h["uplink_bytes"] / clients for h in r["history"]] for r in runs], axis=0)
            link = np.mean([[h["transfer_s"] for h in r["history"]] for r in runs], axis=0)
            ax.plot(np.arange(1, len(acc) + 1), acc, label=lab)
            bx.plot(np.cumsum(up), acc, label=lab)
            cx.plot(np.cumsum(link), acc, label=lab)
        seeds_txt = f", mean of {len(seeds)} seeds" if len(seeds) > 1 else ""
        ax.set_title(f"{result['dataset']}, {pname}, {clients} clients{seeds_txt}")
        ax.set_xlabel("round")
        bx.set_xlabel("bytes uploaded per client (cumulative)")
        cx.set_xlabel("link time (s, cumulative): 250 kB/s up, 500 kB/s down")
        for a in (bx, cx):
            a.set_xscale("log")
        for a in (ax, bx, cx):
            a.set_ylabel("test accuracy (%)")
            a.grid(alpha=0.3)
            a.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
