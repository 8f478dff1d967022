#!/usr/bin/python3
"""PyTorch baselines for benchmarks/bench_sparse.cpp on the same graph (its --dump arrays):
torch.sparse.mm of the GCN-normalized adjacency with dense [nodes, W] matrices, one full-batch
SGC epoch (K = 2, S^2 X precomputed) and one 2-layer GCN epoch (hidden 16, dropout 0.5, the
product ordered S (H W^T) as tern orders it for narrowing layers), with the spec's BitLinear
(benchmarks/pytorch_baselines.py) in the ternary policies. Prints one JSON line.

  /usr/bin/python3 benchmarks/sparse_pytorch.py DUMP_DIR --policy absmean --threads 2
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_baselines import make_linear  # noqa: E402  (the same layers as the other baselines)


def median_ms(reps, fn):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000.0)
    return sorted(times)[len(times) // 2]


def load(dump):
    meta = json.load(open(os.path.join(dump, "meta.json")))
    n, f = meta["nodes"], meta["features"]
    rows = np.fromfile(os.path.join(dump, "row_start.i64"), dtype=np.int64)
    cols = np.fromfile(os.path.join(dump, "col_index.u32"), dtype=np.uint32).astype(np.int64)
    vals = np.fromfile(os.path.join(dump, "values.f32"), dtype=np.float32)
    x = torch.from_numpy(np.fromfile(os.path.join(dump, "features.f32"), dtype=np.float32).reshape(n, f))
    labels = torch.from_numpy(np.fromfile(os.path.join(dump, "labels.i32"), dtype=np.int32).astype(np.int64))
    train = torch.from_numpy(np.fromfile(os.path.join(dump, "train.i64"), dtype=np.int64))
    row_of = np.repeat(np.arange(n, dtype=np.int64), np.diff(rows))
    s = torch.sparse_coo_tensor(np.vstack([row_of, cols]), vals, (n, n)).coalesce()
    return meta, s, x, labels, train


class GCNLayer(nn.Module):
    def __init__(self, s, fin, fout, policy):
        super().__init__()
        self.s = s
        self.linear = make_linear(policy, fin, fout)
        self.project_first = fout < fin

    def forward(self, h):
        if self.project_first:
            return torch.sparse.mm(self.s, self.linear(h))
        return self.linear(torch.sparse.mm(self.s, h))


def epoch_ms(model, x, labels, train, reps):
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=5e-4)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(model(x)[train], labels[train])
        loss.backward()
        opt.step()

    step()
    return median_ms(reps, step)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dump")
    p.add_argument("--policy", default="fp32", choices=("fp32", "fp16", "absmean", "absmedian"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--reps", type=int, default=10)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    meta, s, x, labels, train = load(a.dump)
    n, f, c = meta["nodes"], meta["features"], meta["classes"]
    s_csr = s.to_sparse_csr()
    out = {"nodes": n, "nonzeros": meta["nonzeros"], "threads": a.threads, "policy": a.policy,
           "torch": torch.__version__}
    with torch.no_grad():
        for w in (16, 64, 256):
            d = torch.full((n, w), 0.5)
            torch.sparse.mm(s, d)
            coo = median_ms(a.reps, lambda: torch.sparse.mm(s, d))
            csr = median_ms(a.reps, lambda: torch.sparse.mm(s_csr, d))
            out[f"spmm_ms_{w}"] = min(coo, csr)  # the faster of torch's two layouts
            out[f"spmm_layout_{w}"] = "coo" if coo <= csr else "csr"
        propagated = torch.sparse.mm(s, torch.sparse.mm(s, x))
    sgc = make_linear(a.policy, f, c)
    out["sgc_epoch_ms"] = epoch_ms(sgc, propagated, labels, train, a.reps)
    del propagated
    gcn = nn.Sequential(GCNLayer(s, f, a.hidden, a.policy), nn.ReLU(), nn.Dropout(0.5),
                        GCNLayer(s, a.hidden, c, a.policy))
    out["gcn_epoch_ms"] = epoch_ms(gcn, x, labels, train, a.reps)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
