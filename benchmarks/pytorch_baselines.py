#!/usr/bin/python3
"""PyTorch training-speed baselines for tern's C++ benchmarks.

Each subcommand trains one small model for a fixed number of steps on the CPU
and prints a single JSON line with the throughput and the final loss, so that
the numbers can be put next to tern's benchmarks measured in the same run.

Policies (the layer math follows /work/shared/spec/bitlinear.md):
  fp32       plain nn.Linear / nn.Conv2d
  fp16       emulated binary16: weights and inputs rounded via .half().float()
             in the forward pass, straight-through gradients, fp32 master weights
  absmean    BitLinear, ternary weights with the mean(|W|) scale, 8-bit activations
  absmedian  BitLinear, ternary weights with the (lower) median(|W|) scale

Examples (run with Debian's python3-torch):
  /usr/bin/python3 benchmarks/pytorch_baselines.py mlp --policy absmean --threads 2
  /usr/bin/python3 benchmarks/pytorch_baselines.py cnn --policy fp32 --threads 2 --steps 200
  /usr/bin/python3 benchmarks/pytorch_baselines.py lm --policy absmedian --threads 2 --steps 200
"""

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-5
POLICIES = ("fp32", "fp16", "absmean", "absmedian")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
BIBLE_ARGS = ("bible", "Gen1:1-Rev22:21")
SEED = 1234


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------

class BitLinear(nn.Module):
    """BitNet b1.58 linear layer: per-token normalization, absmax activations,
    ternary weights with an absmean or absmedian scale, STE gradients."""

    def __init__(self, in_features, out_features, bias=True, policy="absmean",
                 act_bits=8, lam=1.0):
        super().__init__()
        if policy not in ("absmean", "absmedian"):
            raise ValueError(f"BitLinear policy must be absmean or absmedian, not {policy}")
        self.in_features = in_features
        self.out_features = out_features
        self.policy = policy
        self.qp = float(2 ** (act_bits - 1) - 1)
        self.lam = lam
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def quantize_input(self, x):
        """Normalize each token and quantize it to act_bits (blended by lam)."""
        x = F.layer_norm(x, (self.in_features,), eps=EPS)
        scale = self.qp / x.detach().abs().amax(dim=-1, keepdim=True).clamp(min=EPS)
        xq = (x * scale).round().clamp(-self.qp, self.qp) / scale
        return x + self.lam * (xq - x).detach()

    def quantize_weight(self, w):
        """Ternarize the whole weight tensor with one scale (blended by lam)."""
        mag = w.detach().abs()
        m = mag.mean() if self.policy == "absmean" else mag.flatten().median()
        scale = 1.0 / m.clamp(min=EPS)
        wq = (w * scale).round().clamp(-1, 1) / scale
        return w + self.lam * (wq - w).detach()

    def forward(self, x):
        return F.linear(self.quantize_input(x), self.quantize_weight(self.weight), self.bias)


def round_fp16_ste(t):
    """Round to IEEE binary16 in the forward pass, identity gradient."""
    return t + (t.half().float() - t).detach()


class FP16Linear(nn.Linear):
    """nn.Linear with emulated binary16 weights and inputs (fp32 master weights)."""

    def forward(self, x):
        return F.linear(round_fp16_ste(x), round_fp16_ste(self.weight), self.bias)


class FP16Conv2d(nn.Conv2d):
    """nn.Conv2d with emulated binary16 weights and inputs (fp32 master weights)."""

    def forward(self, x):
        return self._conv_forward(round_fp16_ste(x), round_fp16_ste(self.weight), self.bias)


class BitConv2d(nn.Module):
    """Convolution as BitLinear over im2col patches (F.unfold): every output
    position is one token of length C_in*kh*kw."""

    def __init__(self, in_channels, out_channels, kernel_size, padding, policy):
        super().__init__()
        self.kernel_size = kernel_size
        self.padding = padding
        self.out_channels = out_channels
        self.linear = BitLinear(in_channels * kernel_size * kernel_size, out_channels,
                                policy=policy)

    def forward(self, x):
        n, _, h, w = x.shape
        h_out = h + 2 * self.padding - self.kernel_size + 1
        w_out = w + 2 * self.padding - self.kernel_size + 1
        patches = F.unfold(x, self.kernel_size, padding=self.padding)  # [n, C*k*k, L]
        y = self.linear(patches.transpose(1, 2))                       # [n, L, C_out]
        return y.transpose(1, 2).reshape(n, self.out_channels, h_out, w_out)


def make_linear(policy, in_features, out_features, bias=None):
    """The linear layer a given policy uses. bias=None follows tern::linear's default: a bias for
    the full-precision policies, none for BitLinear (ternary), so both sides train the same model."""
    if bias is None:
        bias = policy in ("fp32", "fp16")
    if policy == "fp32":
        return nn.Linear(in_features, out_features, bias=bias)
    if policy == "fp16":
        return FP16Linear(in_features, out_features, bias=bias)
    return BitLinear(in_features, out_features, bias=bias, policy=policy)


def make_conv(policy, in_channels, out_channels, kernel_size=3, padding=1):
    """The 2-D convolution a given policy uses."""
    if policy == "fp32":
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
    if policy == "fp16":
        return FP16Conv2d(in_channels, out_channels, kernel_size, padding=padding)
    return BitConv2d(in_channels, out_channels, kernel_size, padding, policy)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------

class MLP(nn.Module):
    """784 -> hidden -> hidden -> 10 with ReLU; every layer uses the policy
    unless fp_ends keeps the first and last layers in fp32."""

    def __init__(self, policy, hidden=256, fp_ends=False):
        super().__init__()
        end_policy = "fp32" if fp_ends else policy
        self.fc1 = make_linear(end_policy, 784, hidden)
        self.fc2 = make_linear(policy, hidden, hidden)
        self.fc3 = make_linear(end_policy, hidden, 10)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SmallCNN(nn.Module):
    """conv3x3(1->32)+ReLU+pool2, conv3x3(32->64)+ReLU+pool2, fc 3136->128+ReLU, fc 128->10."""

    def __init__(self, policy, fp_ends=False):
        super().__init__()
        end_policy = "fp32" if fp_ends else policy
        self.conv1 = make_conv(end_policy, 1, 32)
        self.conv2 = make_conv(policy, 32, 64)
        self.fc1 = make_linear(policy, 64 * 7 * 7, 128, bias=True)   # tern's cnn: linear<P>(flat, 128, true)
        self.fc2 = make_linear(end_policy, 128, 10, bias=True)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)


class RMSNorm(nn.Module):
    """Root-mean-square normalization with a learnable gain (full precision)."""

    def __init__(self, dim, eps=EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with separate q/k/v/o projections."""

    def __init__(self, policy, d_model, n_heads):
        super().__init__()
        if d_model % n_heads:
            raise ValueError("d_model must be divisible by n_heads")
        self.n_heads = n_heads
        self.q = make_linear(policy, d_model, d_model, bias=False)
        self.k = make_linear(policy, d_model, d_model, bias=False)
        self.v = make_linear(policy, d_model, d_model, bias=False)
        self.o = make_linear(policy, d_model, d_model, bias=False)

    def forward(self, x, mask):
        b, t, d = x.shape
        hd = d // self.n_heads

        def heads(z):
            return z.view(b, t, self.n_heads, hd).transpose(1, 2)

        q, k, v = heads(self.q(x)), heads(self.k(x)), heads(self.v(x))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(mask[:t, :t], float("-inf")).softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        return self.o(y)


class Block(nn.Module):
    """Pre-norm transformer block: attention and a 4x GELU MLP."""

    def __init__(self, policy, d_model, n_heads):
        super().__init__()
        self.norm1 = RMSNorm(d_model)
        self.attn = CausalSelfAttention(policy, d_model, n_heads)
        self.norm2 = RMSNorm(d_model)
        self.fc1 = make_linear(policy, d_model, 4 * d_model, bias=False)
        self.fc2 = make_linear(policy, 4 * d_model, d_model, bias=False)

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class ByteLM(nn.Module):
    """Byte-level decoder-only transformer with learned absolute positions;
    embeddings, norms and the head stay full precision."""

    def __init__(self, policy, n_layers, d_model, n_heads, context):
        super().__init__()
        self.tok = nn.Embedding(256, d_model)
        self.pos = nn.Embedding(context, d_model)
        self.blocks = nn.ModuleList(Block(policy, d_model, n_heads) for _ in range(n_layers))
        self.norm = RMSNorm(d_model)
        self.head = nn.Linear(d_model, 256, bias=False)
        self.register_buffer(
            "mask", torch.triu(torch.ones(context, context, dtype=torch.bool), diagonal=1),
            persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))
        for block in self.blocks:
            x = block(x, self.mask)
        return self.head(self.norm(x))


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def load_idx(path):
    """Read a gzipped IDX file into a numpy array (any rank, uint8 data)."""
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 8 != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_fashion_train(data_dir):
    """Fashion-MNIST training images as float32 [60000, 28, 28] in [0,1] and int64 labels."""
    images = load_idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))
    labels = load_idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def load_text_bytes(path):
    """Training text as a uint8 tensor: a file, or the KJV bible via `bible`."""
    if path:
        with open(path, "rb") as fh:
            raw = fh.read()
    else:
        if shutil.which(BIBLE_ARGS[0]) is None:
            raise SystemExit("no --text given and the `bible` program is missing "
                             "(apt-get install bible-kjv)")
        raw = subprocess.run(list(BIBLE_ARGS), check=True, capture_output=True).stdout
    return torch.from_numpy(np.frombuffer(raw, dtype=np.uint8).astype(np.int64))


def epoch_batches(n_items, batch, generator):
    """Endless iterator of index tensors: shuffled full batches, epoch after epoch."""
    while True:
        perm = torch.randperm(n_items, generator=generator)
        for start in range(0, n_items - batch + 1, batch):
            yield perm[start:start + batch]


# --------------------------------------------------------------------------
# Training loop
# --------------------------------------------------------------------------

def train(model, optimizer, next_batch, loss_fn, steps):
    """Run `steps` optimizer steps; returns (seconds, list of losses)."""
    losses = []
    model.train()
    start = time.perf_counter()
    for _ in range(steps):
        inputs, targets = next_batch()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return time.perf_counter() - start, losses


def benchmark(build, make_optimizer, make_next_batch, loss_fn, steps, warmup):
    """Warm up on a throw-away model, then time a fresh seeded model."""
    if warmup > 0:
        torch.manual_seed(SEED + 1)
        scratch = build()
        train(scratch, make_optimizer(scratch), make_next_batch(SEED + 1), loss_fn, warmup)
        del scratch
    torch.manual_seed(SEED)
    model = build()
    return train(model, make_optimizer(model), make_next_batch(SEED), loss_fn, steps)


def report(args, model_name, seconds, losses, items_per_step, rate_key):
    """Print the one JSON result line."""
    tail = losses[-10:]
    result = {
        "framework": "pytorch",
        "model": model_name,
        "policy": args.policy,
        "threads": args.threads,
        "steps": len(losses),
        "seconds": round(seconds, 4),
        rate_key: round(items_per_step * len(losses) / seconds, 2),
        "final_loss": round(losses[-1], 6),
        "loss_last10_mean": round(sum(tail) / len(tail), 6),
        "torch": torch.__version__,
    }
    print(json.dumps(result), flush=True)


def classifier_next_batch(images, labels, batch, flatten):
    """Factory of batch suppliers over an in-memory image set."""
    def make(seed):
        gen = torch.Generator().manual_seed(seed)
        order = epoch_batches(images.shape[0], batch, gen)

        def next_batch():
            idx = next(order)
            x = images[idx]
            x = x.reshape(len(idx), -1) if flatten else x.unsqueeze(1)
            return x, labels[idx]
        return next_batch
    return make


def cmd_mlp(args):
    """MLP 784-H-H-10 on Fashion-MNIST."""
    images, labels = load_fashion_train(args.data_dir)
    steps = args.steps or images.shape[0] // args.batch
    seconds, losses = benchmark(
        lambda: MLP(args.policy, args.hidden, args.fp_ends),
        lambda m: torch.optim.Adam(m.parameters(), lr=args.lr),
        classifier_next_batch(images, labels, args.batch, flatten=True),
        F.cross_entropy, steps, args.warmup)
    report(args, "mlp", seconds, losses, args.batch, "samples_per_s")


def cmd_cnn(args):
    """Small CNN on Fashion-MNIST."""
    images, labels = load_fashion_train(args.data_dir)
    steps = args.steps or images.shape[0] // args.batch
    seconds, losses = benchmark(
        lambda: SmallCNN(args.policy, args.fp_ends),
        lambda m: torch.optim.Adam(m.parameters(), lr=args.lr),
        classifier_next_batch(images, labels, args.batch, flatten=False),
        F.cross_entropy, steps, args.warmup)
    report(args, "cnn", seconds, losses, args.batch, "samples_per_s")


def cmd_lm(args):
    """Byte-level transformer LM on random windows of a text."""
    data = load_text_bytes(args.text)
    if data.numel() <= args.context + 1:
        raise SystemExit("text is shorter than one context window")

    def make_next_batch(seed):
        gen = torch.Generator().manual_seed(seed)
        offsets = torch.arange(args.context + 1)

        def next_batch():
            starts = torch.randint(0, data.numel() - args.context - 1, (args.batch, 1),
                                   generator=gen)
            window = data[starts + offsets]
            return window[:, :-1], window[:, 1:]
        return next_batch

    def lm_loss(logits, targets):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    seconds, losses = benchmark(
        lambda: ByteLM(args.policy, args.n_layers, args.d_model, args.n_heads, args.context),
        lambda m: torch.optim.AdamW(m.parameters(), lr=args.lr, weight_decay=args.weight_decay),
        make_next_batch, lm_loss, args.steps or 200, args.warmup)
    report(args, "lm", seconds, losses, args.batch * args.context, "tokens_per_s")


def build_parser():
    """Command-line interface."""
    parser = argparse.ArgumentParser(description="PyTorch CPU training-speed baselines for tern.")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p, batch, lr):
        p.add_argument("--policy", choices=POLICIES, default="fp32")
        p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
        p.add_argument("--steps", type=int, default=0,
                       help="timed optimizer steps (0: one epoch for mlp/cnn, 200 for lm)")
        p.add_argument("--warmup", type=int, default=5,
                       help="untimed steps on a throw-away model before timing")
        p.add_argument("--batch", type=int, default=batch)
        p.add_argument("--lr", type=float, default=lr)

    p = sub.add_parser("mlp", help="MLP 784-H-H-10 on Fashion-MNIST (Adam)")
    common(p, 128, 1e-3)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--fp-ends", action="store_true",
                   help="keep the first and last layers fp32 in every policy")
    p.add_argument("--data-dir", default=FASHION_DIR)
    p.set_defaults(func=cmd_mlp)

    p = sub.add_parser("cnn", help="small CNN on Fashion-MNIST (Adam)")
    common(p, 128, 1e-3)
    p.add_argument("--fp-ends", action="store_true",
                   help="keep the first conv and the last linear fp32 in every policy")
    p.add_argument("--data-dir", default=FASHION_DIR)
    p.set_defaults(func=cmd_cnn)

    p = sub.add_parser("lm", help="byte-level decoder-only transformer (AdamW)")
    common(p, 32, 1e-3)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--context", type=int, default=128)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--text", default=None,
                   help="training text file (default: the KJV bible from `bible`)")
    p.set_defaults(func=cmd_lm)
    return parser


def main():
    """Entry point."""
    args = build_parser().parse_args()
    torch.set_num_threads(args.threads)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
