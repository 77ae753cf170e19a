"""Two-process gloo DDP training for the comm hook test: python ddp_worker.py RANK PORT MODE OUT."""

from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP


def main(rank: int, port: int, mode: str, out: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    # A file store, not the TCP store: with TCP, rank 0 hosts the store and may exit while rank 1
    # still tears down, which aborts rank 1 ("terminate called without an active exception").
    dist.init_process_group("gloo", init_method=f"file://{out}.store", rank=rank, world_size=2)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    ddp = DDP(model)
    state = None
    if mode != "dense":
        from taskcodec.fl.ddp import TopKState, topk_hook

        state = TopKState(ratio=0.05, values=mode, start_iter=20)
        ddp.register_comm_hook(state, topk_hook)
    g = torch.Generator().manual_seed(1)
    w_true = torch.randn(32, 4, generator=g)
    x_all = torch.randn(2048, 32, generator=g)
    y_all = torch.tanh(x_all @ w_true)
    x, y = x_all[rank::2], y_all[rank::2]  # each rank its half
    opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for step in range(300):
        i = (step * 64) % x.shape[0]
        xb, yb = x[i:i + 64], y[i:i + 64]
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(xb), yb)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        full = torch.nn.functional.mse_loss(model(x_all), y_all).item()
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(2)]
    dist.all_gather(gathered, params)
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"final_loss": full, "first": losses[0], "ranks_equal": bool(torch.equal(*gathered)),
                       "bytes_sent": state.bytes_sent if state else None, "iters": state.iter if state else None}, f)
    dist.barrier()  # both ranks are done with every collective before either tears down
    dist.destroy_process_group()
    # Leave without running C++ static destructors: gloo's threads can still be joinable at
    # interpreter exit and abort the process ("terminate called without an active exception")
    # after all the work is done and written.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
