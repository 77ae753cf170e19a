"""GPU coder throughput: rANS encode / decode and quantization on a CUDA device, with the
CPU coder on the same machine's cores in the same run.

Data: Laplace-distributed symbols over 64 channels with learned per-channel tables (the
CPU benchmark's "laplace64" case), int32, shape [1, 64, H, W]. Decode reads a frame that
is already in device memory and writes int32 symbols into a preallocated device tensor;
the time is the kernel's alone, measured with CUDA events (median of several runs).
Encode times the coding and gather kernels (events) and, separately, the whole call that
returns the frame's bytes in host memory. GB/s are decoded (or encoded) int32 bytes per
second, Gsym/s symbols per second; "compressed GB/s" counts the frame's bytes.

    python bench/gpu_bench.py [--symbols 67108864] [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import taskcodec as tc  # noqa: E402


def laplace_case(rng, n_symbols, channels=64):
    hw = max(1, n_symbols // channels)
    h = 1 << (max(hw, 1).bit_length() // 2)
    w = max(1, hw // h)
    scales = rng.uniform(0.8, 6.0, size=channels)
    k = 129
    offsets = np.full(channels, -64, dtype=np.int32)
    grid = np.arange(k)[None, :] - 64
    pmf = np.exp(-np.abs(grid) / scales[:, None])
    table = tc.CdfTable.from_pmf(pmf, offsets)
    sym = np.round(rng.laplace(0, scales[None, :, None, None], size=(1, channels, h, w))).astype(np.int32)
    return table, sym


def median_ms(fn, runs):
    out = []
    for _ in range(runs):
        out.append(fn())
    return statistics.median(out), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=1 << 26)
    ap.add_argument("--chunks", type=int, nargs="+", default=[1 << 20, 1 << 16, 1 << 14, 1 << 12])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--topk-n", type=int, default=25_000_000)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args(argv)
    if not tc.has_cuda():
        print("gpu_bench: no CUDA build or no CUDA device here; nothing to measure")
        return 0
    import torch

    from taskcodec import _core
    from taskcodec.codec import gpu as tcc
    from taskcodec.fl import gpu as fl_gpu

    rng = np.random.default_rng(0)
    table, sym = laplace_case(rng, args.symbols)
    n = sym.size
    dev = torch.device("cuda", 0)
    sym_dev = torch.from_numpy(sym).to(dev)
    out_dev = torch.empty(sym.shape, dtype=torch.int32, device=dev)
    rows = []
    machine = {
        "gpu": _core.cuda_device_name(0),
        "torch": torch.__version__,
        "cpu_threads": os.cpu_count(),
    }
    for chunk in args.chunks:
        blob_cpu = tc.encode(sym, table, chunk_size=chunk)
        # encode on the GPU: identical bytes, then timings
        blob_gpu, _ = tcc.encode_device(sym_dev, table, None, 1, lanes=32, chunk_size=chunk, checksum=True,
                                        meta=b"", return_kernel_ms=True)
        same = blob_gpu == blob_cpu
        enc_k = []
        enc_wall = []
        for _ in range(args.runs):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            _, ms = tcc.encode_device(sym_dev, table, None, 1, lanes=32, chunk_size=chunk, checksum=True,
                                      meta=b"", return_kernel_ms=True)
            enc_wall.append((time.perf_counter() - t0) * 1e3)
            enc_k.append(ms)
        frame_dev = torch.frombuffer(bytearray(blob_cpu), dtype=torch.uint8).to(dev)
        dec_k = []
        for _ in range(args.runs + 1):
            out_dev.fill_(-1)
            _, ms = tcc.decode_device(blob_cpu, table, device=dev, out=out_dev, max_symbols=n,
                                      frame_on_device=frame_dev, return_kernel_ms=True)
            dec_k.append(ms)
        dec_k = dec_k[1:]
        ok = bool(torch.equal(out_dev.cpu(), torch.from_numpy(sym)))
        # CPU coder, all cores, same data
        cpu_enc, cpu_dec = [], []
        out_host = np.empty_like(sym)
        for _ in range(3):
            t0 = time.perf_counter()
            tc.encode(sym, table, chunk_size=chunk)
            cpu_enc.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            tc.decode(blob_cpu, table, out=out_host, max_symbols=n)
            cpu_dec.append((time.perf_counter() - t0) * 1e3)
        e_ms, d_ms = statistics.median(enc_k), statistics.median(dec_k)
        rows.append({
            "chunk_size": chunk,
            "chunks": -(-n // chunk),
            "symbols": n,
            "frame_bytes": len(blob_cpu),
            "gpu_bytes_equal_cpu": same,
            "gpu_decode_correct": ok,
            "decode_kernel_ms": d_ms,
            "decode_gsym_s": n / d_ms / 1e6,
            "decode_gb_s_int32": 4 * n / d_ms / 1e6,
            "decode_compressed_gb_s": len(blob_cpu) / d_ms / 1e6,
            "encode_kernel_ms": e_ms,
            "encode_gsym_s": n / e_ms / 1e6,
            "encode_gb_s_int32": 4 * n / e_ms / 1e6,
            "encode_call_ms": statistics.median(enc_wall),
            "cpu_encode_ms": statistics.median(cpu_enc),
            "cpu_decode_ms": statistics.median(cpu_dec),
            "decode_runs_ms": dec_k,
            "encode_runs_ms": enc_k,
        })
    # quantization kernel
    x = torch.randn((1, 64, sym.shape[2], sym.shape[3]), device=dev)
    step = np.full(64, 0.05, np.float32)
    zero = np.zeros(64, np.float32)
    q_ms = []
    for _ in range(args.runs):
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        tc.quantize(x, step, zero)
        b.record()
        torch.cuda.synchronize()
        q_ms.append(a.elapsed_time(b))
    quant = {"values": x.numel(), "call_ms": statistics.median(q_ms),
             "gb_s_read_plus_write": 8 * x.numel() / statistics.median(q_ms) / 1e6}
    # top-k of 25 M floats: ours (with and without error feedback) vs torch.topk on |x|
    topk_rows = []
    xt = torch.randn(args.topk_n, device=dev)
    res = torch.zeros_like(xt)

    def event_ms(fn):
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b)

    for frac in (0.001, 0.01):
        k = int(round(frac * args.topk_n))
        idx, val = fl_gpu.topk(xt, k)
        ti = torch.topk(xt.abs(), k, sorted=False).indices.sort().values
        exact = bool(torch.equal(idx.long(), ti))
        ours = [event_ms(lambda: fl_gpu.topk(xt, k)) for _ in range(args.runs)]
        ours_ef = [event_ms(lambda: fl_gpu.topk(xt, k, residual=res)) for _ in range(args.runs)]
        theirs = [event_ms(lambda: torch.topk(xt.abs(), k, sorted=False)) for _ in range(args.runs)]
        theirs_sorted = [event_ms(lambda: torch.topk(xt.abs(), k).indices.sort()) for _ in range(args.runs)]
        topk_rows.append({
            "n": args.topk_n, "k": k, "same_indices_as_torch": exact,
            "taskcodec_ms": statistics.median(ours), "taskcodec_ef_ms": statistics.median(ours_ef),
            "torch_topk_ms": statistics.median(theirs),
            "torch_topk_index_sorted_ms": statistics.median(theirs_sorted),
        })
    result = {"machine": machine, "rows": rows, "quantize": quant, "topk": topk_rows}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_bench.json").write_text(json.dumps(result, indent=1))
    print(f"GPU: {machine['gpu']}  ({n} int32 symbols, 64 Laplace channels, lanes 32)")
    print(f"{'chunk':>8} {'chunks':>6} {'bytes=CPU':>9} {'dec ms':>7} {'dec GB/s':>9} {'dec Gsym/s':>10} "
          f"{'enc ms':>7} {'enc GB/s':>9} {'enc call ms':>11} {'CPU enc ms':>10} {'CPU dec ms':>10}")
    for r in rows:
        print(f"{r['chunk_size']:>8} {r['chunks']:>6} {str(r['gpu_bytes_equal_cpu'] and r['gpu_decode_correct']):>9} "
              f"{r['decode_kernel_ms']:7.2f} {r['decode_gb_s_int32']:9.1f} {r['decode_gsym_s']:10.2f} "
              f"{r['encode_kernel_ms']:7.2f} {r['encode_gb_s_int32']:9.1f} {r['encode_call_ms']:11.1f} "
              f"{r['cpu_encode_ms']:10.1f} {r['cpu_decode_ms']:10.1f}")
    print(f"quantize: {quant['values']} floats in {quant['call_ms']:.3f} ms (call, incl. status sync): "
          f"{quant['gb_s_read_plus_write']:.0f} GB/s read+write")
    print(f"{'top-k n':>10} {'k':>8} {'=torch':>6} {'ours ms':>8} {'ours+EF ms':>10} {'torch.topk ms':>13} "
          f"{'torch+sort ms':>13} {'speed-up':>8}")
    for r in topk_rows:
        print(f"{r['n']:>10} {r['k']:>8} {str(r['same_indices_as_torch']):>6} {r['taskcodec_ms']:8.3f} "
              f"{r['taskcodec_ef_ms']:10.3f} {r['torch_topk_ms']:13.3f} {r['torch_topk_index_sorted_ms']:13.3f} "
              f"{r['torch_topk_ms'] / r['taskcodec_ms']:7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
