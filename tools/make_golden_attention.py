#!/usr/bin/python3
"""Generate golden forward/backward values for tern's multi-head causal self-attention.

An independent float64 PyTorch reference of tern::causal_self_attention
(include/tern/layers/attention.hpp) in the fp32 policy and in the ternary
policies, where each of the q/k/v/o projections is a bias-free BitLinear as
/work/shared/spec/bitlinear.md defines it:

- per-token parameter-free normalization over the feature axis (biased variance, eps 1e-5);
- per-token absmax activation quantization to 8 bits, s_x = 127 / max(max|x~|, eps),
  round half to even, clamp to [-127, 127];
- per-tensor ternary weights, s_w = 1 / max(m, eps) with m = mean|W| (absmean) or the
  LOWER median of |W| (absmedian), Wq = clamp(round(W s_w), -1, 1);
- the lambda blend of tern's quantize.hpp, one lambda for all four projections and for
  both operands: x^ = x~ + lambda (xq / s_x - x~), W^ = W + lambda (Wq / s_w - W);
- straight-through estimator: the scales are constants, rounding and clamping pass the
  gradient unchanged (no clipping mask).

Attention itself, per batch row and head h (head_dim hd = d_model / heads, head h is the
feature slice [h*hd, (h+1)*hd)):  S = q k^T / sqrt(hd), entries with key position > query
position masked to -inf, P = softmax(S) over keys, ctx = P v, y = o(ctx).
Positions, two kinds:
- rotary: q and k (after their projections) are rotated per head in half-split pairs
  (i, i + hd/2) by the angle t * 10000^(-2i/hd), t = 0 .. T-1 the token position;
- learned: tern::learned_positions in front of the attention, x + P[t] (P a [T, d_model]
  table), so the golden covers the positions' gradient too.
Every gradient is autograd's, through L = sum(y * g).

Independent cross-checks done on every run (the script stops if one fails):
- the fp32 attention without positions equals torch.nn.MultiheadAttention (bias-free,
  causal mask) on the same weights, forward and input gradient;
- the rotary rotation equals a multiplication by exp(i angle) in complex arithmetic;
- BitLinear forward at lambda 1 equals the integer form (xq Wq^T) / (s_x s_w).

Run from the repository root with a Python that has torch (Debian's python3-torch):

    /usr/bin/python3 tools/make_golden_attention.py     # writes tests/data/attention_golden.txt
    /usr/bin/python3 tools/make_golden_attention.py --out FILE

File format (parsed by tests/test_attention_golden.cpp, no Python needed):

    # comment lines
    case <name> policy <fp32|absmean|absmedian> bits 8 lambda <float> batch <B> tokens <T> dmodel <D> heads <H> positions <rotary|learned>
    tensor <name> <count>
    <count floats separated by spaces, %.9g>
    ... (tensors x, [P,] Wq, Wk, Wv, Wo, g, y, dx, [dP,] dWq, dWk, dWv, dWo)
    end
"""

import argparse
import math
import os
import sys

import torch

EPS = 1e-5
ROPE_BASE = 10000.0
BITS = 8
DEFAULT_OUT = os.path.join("tests", "data", "attention_golden.txt")
# Every rounding argument (x~ s_x of each projection's input, W s_w after the clamp) must stay at
# least this far from a half-integer, so that tern's float32 arithmetic makes the same rounding
# decisions as this float64 reference (float32 errors in them are below 1e-4).
TIE_MARGIN = 3e-3
PROJECTIONS = ("q", "k", "v", "o")
# The C++ test's error floor, as a fraction of the tensor's largest magnitude (see error_measure).
FLOOR_FRACTION = 0.1


def normalize_tokens(x):
    """Parameter-free per-token normalization over the last axis (biased variance)."""
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS)


def ste(v, forward_value):
    """forward_value in the forward pass, identity gradient with respect to v."""
    return v + (forward_value - v).detach()


def weight_magnitude(w, policy):
    """Per-tensor statistic m: mean(|W|), or the lower median of |W| (smaller middle value)."""
    a = torch.sort(w.detach().abs().flatten()).values
    if policy == "absmean":
        return a.mean()
    if policy == "absmedian":
        return a[(a.numel() - 1) // 2]
    raise ValueError(f"unknown policy {policy}")


class BitLinearRef:
    """One bias-free projection y = x^ W^T in a policy; records rounding margins."""

    def __init__(self, policy, lam):
        self.policy, self.lam = policy, lam
        self.margins = []  # distances of rounding arguments to the nearest half-integer
        self.int_checks = []

    def __call__(self, x, w):
        if self.policy == "fp32":
            return x @ w.t()
        qp = float(2 ** (BITS - 1) - 1)
        xt = normalize_tokens(x)
        amax = xt.detach().abs().amax(dim=-1, keepdim=True)
        s_x = qp / torch.clamp(amax, min=EPS)
        x_arg = torch.clamp(xt * s_x, -qp, qp)
        xq = ste(xt * s_x, torch.round(x_arg))
        x_hat = xt + self.lam * (xq / s_x - xt)

        m = weight_magnitude(w, self.policy)
        s_w = 1.0 / torch.clamp(m, min=EPS)
        w_arg = torch.clamp(w * s_w, -1.0, 1.0)
        wq = ste(w * s_w, torch.round(w_arg))
        w_hat = w + self.lam * (wq / s_w - w)

        self.margins.append(half_integer_distance(x_arg.detach()))
        self.margins.append(half_integer_distance(w_arg.detach()))
        y = x_hat @ w_hat.t()
        if self.lam == 1.0:
            y_int = (xq.detach() @ wq.detach().t()) / (s_x * s_w)
            self.int_checks.append(torch.allclose(y_int, y.detach(), rtol=1e-12, atol=1e-12))
        assert set(wq.detach().unique().tolist()) <= {-1.0, 0.0, 1.0}, "Wq not ternary"
        return y


def half_integer_distance(v):
    """Smallest distance of any entry of v to a point k + 0.5."""
    frac = v - torch.floor(v)
    return float((frac - 0.5).abs().min())


def rope_angles(T, hd):
    """angle[t, i] = t * base^(-2i / hd) for i < hd / 2."""
    half = hd // 2
    inv = torch.tensor([ROPE_BASE ** (-2.0 * i / hd) for i in range(half)])
    return torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]


def rotate(z, heads):
    """Rotates pairs (i, i + hd/2) of every head of z [B, T, D] by the position's angles."""
    B, T, D = z.shape
    hd = D // heads
    half = hd // 2
    ang = rope_angles(T, hd)
    c = torch.cos(ang).to(z.dtype)[None, :, None, :]
    s = torch.sin(ang).to(z.dtype)[None, :, None, :]
    zh = z.reshape(B, T, heads, hd)
    a, b = zh[..., :half], zh[..., half:]
    out = torch.cat([a * c - b * s, a * s + b * c], dim=-1)
    return out.reshape(B, T, D)


def rotate_complex(z, heads):
    """The same rotation as complex multiplication, (a + ib) exp(i angle): a cross-check."""
    B, T, D = z.shape
    hd = D // heads
    half = hd // 2
    zh = z.reshape(B, T, heads, hd)
    zc = torch.complex(zh[..., :half], zh[..., half:])
    rc = zc * torch.polar(torch.ones(T, half, dtype=torch.float64), rope_angles(T, hd))[None, :, None, :]
    return torch.cat([rc.real, rc.imag], dim=-1).reshape(B, T, D)


def attention(x, weights, heads, policy, lam, rotary):
    """tern's causal_self_attention: returns y and the BitLinearRef of each projection."""
    B, T, D = x.shape
    hd = D // heads
    proj = {name: BitLinearRef(policy, lam) for name in PROJECTIONS}
    q = proj["q"](x, weights["q"])
    k = proj["k"](x, weights["k"])
    v = proj["v"](x, weights["v"])
    if rotary:
        q, k = rotate(q, heads), rotate(k, heads)
    mask = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)  # True above the diagonal: a later key
    ctx_heads = []
    for h in range(heads):
        cols = slice(h * hd, (h + 1) * hd)
        s = q[..., cols] @ k[..., cols].transpose(-1, -2) / math.sqrt(hd)
        p = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
        ctx_heads.append(p @ v[..., cols])
    ctx = torch.cat(ctx_heads, dim=-1)
    return proj["o"](ctx, weights["o"]), proj


def check_against_torch_mha(x, weights, heads):
    """fp32 attention without positions equals torch.nn.MultiheadAttention (forward, dx)."""
    D = x.shape[-1]
    mha = torch.nn.MultiheadAttention(D, heads, bias=False, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([weights["q"], weights["k"], weights["v"]], dim=0))
        mha.out_proj.weight.copy_(weights["o"])
    T = x.shape[1]
    mask = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    xa = x.detach().clone().requires_grad_(True)
    xb = x.detach().clone().requires_grad_(True)
    ya, _ = mha(xa, xa, xa, attn_mask=mask, need_weights=False)
    w = {n: t.detach() for n, t in weights.items()}
    yb, _ = attention(xb, w, heads, "fp32", 1.0, False)
    g = torch.linspace(-1, 1, ya.numel()).reshape(ya.shape)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    assert torch.allclose(ya, yb, rtol=1e-12, atol=1e-12), "differs from nn.MultiheadAttention"
    assert torch.allclose(xa.grad, xb.grad, rtol=1e-10, atol=1e-12), "dx differs from nn.MultiheadAttention"


def make_inputs(seed, B, T, D, learned):
    """float32-representable x, positions, weights and g, as float64 tensors."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, T, D, generator=gen) + 0.2).float().double()
    pos = (torch.randn(T, D, generator=gen) * 0.5).float().double() if learned else None
    weights = {n: (torch.randn(D, D, generator=gen) / math.sqrt(D)).float().double() for n in PROJECTIONS}
    g = torch.randn(B, T, D, generator=gen).float().double()
    return x, pos, weights, g


def evaluate(x, pos, weights, g, heads, policy, lam):
    """Forward and backward of one case (learned positions when pos is given, else rotary).

    Returns y, the gradients by golden-file name, and the projections' BitLinearRef records.
    The inputs are copied, so this runs in their dtype (float64 for the golden values).
    """
    x = x.detach().clone().requires_grad_(True)
    weights = {n: w.detach().clone().requires_grad_(True) for n, w in weights.items()}
    learned = pos is not None
    if learned:
        pos = pos.detach().clone().requires_grad_(True)
    y, proj = attention(x + pos if learned else x, weights, heads, policy, lam, not learned)
    (y * g).sum().backward()
    grads = {"dx": x.grad}
    if learned:
        grads["dP"] = pos.grad
    for n in PROJECTIONS:
        grads["dW" + n] = weights[n].grad
    return y.detach(), grads, proj


def error_measure(got, ref):
    """The C++ test's error: max |got - ref| / max(|ref|, FLOOR_FRACTION * max|ref|)."""
    floor = FLOOR_FRACTION * float(ref.abs().max())
    return float(((got.double() - ref).abs() / torch.clamp(ref.abs(), min=floor)).max())


def run_case(spec):
    """Compute one golden case; retry seeds until every rounding decision has a safe margin."""
    name, policy, lam, positions, seed = spec
    B, T, D, H = 2, 5, 8, 2
    learned = positions == "learned"
    for attempt in range(1000):
        x, pos, weights, g = make_inputs(seed + 1000 * attempt, B, T, D, learned)
        y, grads, proj = evaluate(x, pos, weights, g, H, policy, lam)
        # At lambda 0 the rounded values are multiplied by 0: no rounding decision matters.
        margins = [m for p in proj.values() for m in p.margins] if lam > 0 else []
        margin = min(margins) if margins else float("inf")
        if margin >= TIE_MARGIN:
            break
    else:
        raise RuntimeError(f"{name}: no seed with a safe rounding margin")
    assert all(ok for p in proj.values() for ok in p.int_checks), f"{name}: integer form differs"

    # The same computation in float32 (PyTorch's own kernels): how far an ordinary float32
    # implementation lands from the float64 values under the C++ test's error measure.
    y32, grads32, _ = evaluate(x.float(), None if pos is None else pos.float(),
                               {n: w.float() for n, w in weights.items()}, g.float(), H, policy, lam)
    f32_error = max([error_measure(y32, y)] + [error_measure(grads32[k], grads[k]) for k in grads])

    tensors = {"x": x}
    if learned:
        tensors["P"] = pos
    for n in PROJECTIONS:
        tensors["W" + n] = weights[n]
    tensors["g"] = g
    tensors["y"] = y
    tensors["dx"] = grads["dx"]
    if learned:
        tensors["dP"] = grads["dP"]
    for n in PROJECTIONS:
        tensors["dW" + n] = grads["dW" + n]
    header = {"name": name, "policy": policy, "bits": BITS, "lambda": lam, "batch": B, "tokens": T,
              "dmodel": D, "heads": H, "positions": positions}
    return header, tensors, {"seed": seed + 1000 * attempt, "margin": margin, "f32_error": f32_error}


def format_case(header, tensors):
    """Serialize one case in the golden text format."""
    lines = [
        "case {name} policy {policy} bits {bits} lambda {lam} batch {batch} tokens {tokens} dmodel {dmodel} "
        "heads {heads} positions {positions}".format(lam="%.9g" % header["lambda"], **header)
    ]
    for tname, t in tensors.items():
        flat = t.reshape(-1).tolist()
        lines.append(f"tensor {tname} {len(flat)}")
        lines.append(" ".join("%.9g" % v for v in flat))
    lines.append("end")
    return "\n".join(lines)


def case_specs():
    """(name, policy, lambda, positions, seed) for every golden case."""
    specs = []
    seed = 100
    for positions in ("rotary", "learned"):
        for policy, lam in (("fp32", 1.0), ("absmean", 0.0), ("absmean", 1.0), ("absmean", 0.5),
                            ("absmedian", 1.0)):
            label = policy if policy == "fp32" else f"{policy}_l{lam:g}"
            specs.append((f"{label}_{positions}", policy, lam, positions, seed))
            seed += 1
    return specs


def self_checks():
    """Cross-checks of the reference against independent formulations (see the docstring)."""
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(2, 5, 8, generator=gen)
    weights = {n: torch.randn(8, 8, generator=gen) / math.sqrt(8) for n in PROJECTIONS}
    check_against_torch_mha(x, weights, 2)
    z = torch.randn(2, 5, 8, generator=gen)
    assert torch.allclose(rotate(z, 2), rotate_complex(z, 2), rtol=1e-12, atol=1e-12), "rotation differs"
    odd = torch.tensor([0.3, -0.1, 0.5, 0.2, -0.4])
    assert float(weight_magnitude(odd, "absmedian")) == 0.3
    even = torch.tensor([0.3, -0.1, 0.5, 0.2])
    assert float(weight_magnitude(even, "absmedian")) == 0.2  # lower median: smaller middle value
    assert float(weight_magnitude(even, "absmedian")) == float(torch.median(even.abs()))


def main():
    """Compute all cases, write the golden file and print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="output path")
    args = parser.parse_args()

    torch.set_default_dtype(torch.float64)
    self_checks()
    blocks = [
        "# Golden causal self-attention values (float64 PyTorch reference of tern::causal_self_attention with "
        "BitLinear q/k/v/o projections per /work/shared/spec/bitlinear.md).",
        f"# Made by tools/make_golden_attention.py with torch {torch.__version__}; re-run from the repository "
        "root with: /usr/bin/python3 tools/make_golden_attention.py",
        "# Tensors row-major: x[B*T*D], P[T*D] (learned positions, added to x), W*[D*D] (out x in), "
        "g[B*T*D] = dL/dy, y[B*T*D], dx, dP, dW*; L = sum(y*g). No biases.",
    ]
    print(f"{'case':28s} {'seed':>6s} {'margin':>9s}   max|y|  float32 torch error")
    specs = case_specs()
    for spec in specs:
        header, tensors, stats = run_case(spec)
        blocks.append(format_case(header, tensors))
        print(f"{header['name']:28s} {stats['seed']:6d} {stats['margin']:9.4g}   "
              f"{float(tensors['y'].abs().max()):6.4g}  {stats['f32_error']:.2e}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="ascii") as fh:
        fh.write("\n".join(blocks) + "\n")
    print(f"wrote {len(specs)} cases to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
