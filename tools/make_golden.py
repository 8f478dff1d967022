#!/usr/bin/python3
"""Generate golden forward/backward values for tern's BitLinear layer.

This is an independent float64 PyTorch reference of docs/spec BitLinear
(/work/shared/spec/bitlinear.md): per-token parameter-free normalization,
per-token absmax activation quantization, per-tensor absmean / absmedian
ternary weight quantization, the lambda blend, straight-through gradients
computed by autograd.

Run from the repository root with a Python that has torch (Debian's
python3-torch):

    /usr/bin/python3 tools/make_golden.py            # writes tests/data/bitlinear_golden.txt
    /usr/bin/python3 tools/make_golden.py --out FILE

File format (parsed by the C++ tests, no Python needed):

    # comment lines
    case <name> policy <absmean|absmedian|fp32> bits <int> lambda <float> tokens <T> in <K> out <N> bias <0|1>
    tensor <name> <count>
    <count floats separated by spaces, %.9g>
    ... (tensors x, W, b, g, y, dx, dW, db in that order)
    end
"""

import argparse
import os
import sys

import torch

EPS = 1e-5
DEFAULT_OUT = os.path.join("tests", "data", "bitlinear_golden.txt")
# Rounding arguments (x~ * s_x and W * s_w) must stay at least this far from a
# half-integer, so that a float32 implementation makes the same rounding
# decisions as this float64 reference.
TIE_MARGIN = 3e-3
TENSOR_ORDER = ("x", "W", "b", "g", "y", "dx", "dW", "db")


def normalize_tokens(x):
    """Parameter-free per-token normalization over the last axis (biased variance)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS)


def ste_round_clamp(v, lo, hi):
    """round-half-even then clamp in the forward pass; identity gradient (STE)."""
    return v + (torch.clamp(torch.round(v), lo, hi) - v).detach()


def weight_magnitude(w, policy):
    """Per-tensor weight statistic m: mean(|W|) or the lower median of |W|."""
    a = w.detach().abs().flatten()
    if policy == "absmean":
        return a.mean()
    if policy == "absmedian":
        return torch.median(a)  # lower median for an even count
    raise ValueError(f"unknown policy {policy}")


def bitlinear_forward(x, w, b, policy, bits, lam):
    """Spec forward pass. Returns y and a dict of intermediates for checks."""
    if policy == "fp32":
        y = x @ w.t()
        if b is not None:
            y = y + b
        return y, {}
    qp = float(2 ** (bits - 1) - 1)
    xt = normalize_tokens(x)
    amax = xt.detach().abs().amax(dim=-1, keepdim=True)
    s_x = qp / torch.clamp(amax, min=EPS)
    x_arg = xt * s_x
    xq = ste_round_clamp(x_arg, -qp, qp)
    x_hat = xt + lam * (xq / s_x - xt)

    m = weight_magnitude(w, policy)
    s_w = 1.0 / torch.clamp(m, min=EPS)
    w_arg = w * s_w
    wq = ste_round_clamp(w_arg, -1.0, 1.0)
    w_hat = w + lam * (wq / s_w - w)

    y = x_hat @ w_hat.t()
    if b is not None:
        y = y + b
    info = {
        "xt": xt.detach(),
        "x_hat": x_hat.detach(),
        "w_hat": w_hat.detach(),
        "x_arg": x_arg.detach(),
        "w_arg": w_arg.detach(),
        "xq": xq.detach(),
        "wq": wq.detach(),
        "s_x": s_x.detach(),
        "s_w": s_w.detach(),
    }
    return y, info


def half_integer_distance(v):
    """Smallest distance of any entry of v to a point k + 0.5."""
    frac = v - torch.floor(v)
    return float((frac - 0.5).abs().min()) if v.numel() else float("inf")


def make_inputs(seed, tokens_shape, k, n):
    """Random float32-representable inputs, returned as float64 tensors."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(*tokens_shape, k, generator=gen) * 1.5 + 0.3).float()
    w = (torch.randn(n, k, generator=gen) * 0.2).float()
    b = (torch.randn(n, generator=gen) * 0.1).float()
    g = torch.randn(*tokens_shape, n, generator=gen).float()
    return x.double(), w.double(), b.double(), g.double()


def manual_grads(info, x, w, g):
    """Hand-derived STE gradients (dW, dx), to cross-check autograd."""
    k = w.shape[1]
    g2 = g.reshape(-1, g.shape[-1])
    x_hat = info["x_hat"].reshape(-1, k)
    xt = info["xt"].reshape(-1, k)
    dw = g2.t() @ x_hat
    dxt = g2 @ info["w_hat"]
    # Normalization backward without gamma/beta:
    # dx = (dxt - mean(dxt) - xt * mean(dxt * xt)) / sqrt(var + eps)
    x2 = x.reshape(-1, k)
    var = ((x2 - x2.mean(-1, keepdim=True)) ** 2).mean(-1, keepdim=True)
    dx = (dxt - dxt.mean(-1, keepdim=True)
          - xt * (dxt * xt).mean(-1, keepdim=True)) / torch.sqrt(var + EPS)
    return dw, dx.reshape(x.shape)


def run_case(spec):
    """Compute one golden case; retry seeds until rounding has a safe margin."""
    name, policy, bits, lam, k, n, seed = spec
    tokens_shape = (2, 3)
    for attempt in range(100):
        x, w, b, g = make_inputs(seed + 1000 * attempt, tokens_shape, k, n)
        x.requires_grad_(True)
        w.requires_grad_(True)
        b.requires_grad_(True)
        y, info = bitlinear_forward(x, w, b, policy, bits, lam)
        margin = float("inf")
        if info:
            margin = min(half_integer_distance(info["x_arg"]),
                         half_integer_distance(info["w_arg"]))
        if margin >= TIE_MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no seed with a safe rounding margin")
    loss = (y * g).sum()
    loss.backward()

    if info:
        wq = info["wq"]
        assert set(wq.unique().tolist()) <= {-1.0, 0.0, 1.0}, "Wq not ternary"
        qp = 2 ** (bits - 1) - 1
        assert float(info["xq"].abs().max()) <= qp
        assert torch.equal(info["xq"], torch.round(info["xq"]))
        dw_manual, dx_manual = manual_grads(info, x.detach(), w.detach(), g)
        assert torch.allclose(dw_manual, w.grad, rtol=1e-10, atol=1e-12), "dW mismatch"
        assert torch.allclose(dx_manual, x.grad, rtol=1e-8, atol=1e-10), "dx mismatch"
        if lam == 1.0:
            # y - b = (xq Wq^T) / (s_w s_x): the integer-GEMM form of the spec.
            y_int = (info["xq"] @ wq.t()) / (info["s_w"] * info["s_x"])
            assert torch.allclose(y_int + b.detach(), y.detach(), rtol=1e-12, atol=1e-12)
    else:
        wq = None
    assert torch.allclose(b.grad, g.reshape(-1, n).sum(0), rtol=1e-12, atol=1e-12)

    tensors = {
        "x": x.detach(), "W": w.detach(), "b": b.detach(), "g": g,
        "y": y.detach(), "dx": x.grad, "dW": w.grad, "db": b.grad,
    }
    header = {
        "name": name, "policy": policy, "bits": bits, "lambda": lam,
        "tokens": 6, "in": k, "out": n, "bias": 1,
    }
    stats = {
        "seed": seed + 1000 * attempt,
        "margin": margin,
        "wq_counts": (None if wq is None else
                      {v: int((wq == v).sum()) for v in (-1.0, 0.0, 1.0)}),
    }
    return header, tensors, stats


def format_case(header, tensors):
    """Serialize one case in the golden text format."""
    lines = [
        "case {name} policy {policy} bits {bits} lambda {lam} tokens {tokens} "
        "in {k} out {n} bias {bias}".format(
            name=header["name"], policy=header["policy"], bits=header["bits"],
            lam="%.9g" % header["lambda"], tokens=header["tokens"],
            k=header["in"], n=header["out"], bias=header["bias"])
    ]
    for tname in TENSOR_ORDER:
        flat = tensors[tname].reshape(-1).tolist()
        lines.append(f"tensor {tname} {len(flat)}")
        lines.append(" ".join("%.9g" % v for v in flat))
    lines.append("end")
    return "\n".join(lines)


def case_specs():
    """(name, policy, bits, lambda, K, N, seed) for every golden case."""
    return [
        ("absmean_b8_l1_k16_n8", "absmean", 8, 1.0, 16, 8, 11),
        ("absmean_b8_l0.5_k16_n8", "absmean", 8, 0.5, 16, 8, 12),
        ("absmedian_b8_l1_k16_n8", "absmedian", 8, 1.0, 16, 8, 13),
        ("absmedian_b8_l0.5_k16_n8", "absmedian", 8, 0.5, 16, 8, 14),
        ("absmean_b8_l1_k15_n5", "absmean", 8, 1.0, 15, 5, 15),
        ("absmedian_b8_l1_k15_n5", "absmedian", 8, 1.0, 15, 5, 16),
        ("absmedian_b8_l0.5_k15_n5", "absmedian", 8, 0.5, 15, 5, 17),
        ("absmean_b4_l1_k16_n8", "absmean", 4, 1.0, 16, 8, 18),
        ("fp32_k16_n8", "fp32", 32, 1.0, 16, 8, 19),
    ]


def main():
    """Compute all cases, write the golden file and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output path")
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    blocks = [
        "# Golden BitLinear values (float64 PyTorch reference of the spec "
        "/work/shared/spec/bitlinear.md).",
        "# Made by tools/make_golden.py; re-run from the repository root with: "
        "/usr/bin/python3 tools/make_golden.py",
        "# Tensors: x[T*K] token-major, W[N*K] row-major, b[N], g[T*N] = dL/dy, "
        "y[T*N], dx[T*K], dW[N*K], db[N]; L = sum(y*g). fp32 cases: bits 32, "
        "no normalization.",
    ]
    print(f"{'case':28s} {'seed':>5s} {'margin':>9s}  Wq(-1/0/+1)   max|y|")
    for spec in case_specs():
        header, tensors, stats = run_case(spec)
        blocks.append(format_case(header, tensors))
        counts = stats["wq_counts"]
        cstr = "-" if counts is None else "/".join(str(counts[v]) for v in (-1.0, 0.0, 1.0))
        print(f"{header['name']:28s} {stats['seed']:5d} {stats['margin']:9.4g}  "
              f"{cstr:12s}  {float(tensors['y'].abs().max()):.4g}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="ascii") as fh:
        fh.write("\n".join(blocks) + "\n")
    print(f"wrote {len(case_specs())} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
