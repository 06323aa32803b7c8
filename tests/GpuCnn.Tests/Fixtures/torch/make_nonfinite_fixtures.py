#!/usr/bin/python3
"""NaN and ±∞ fixtures: every operation on inputs, weights and gradients holding NaN, +∞ and −∞, with PyTorch's
results (commit the output; CI never runs this). Run from this folder: /usr/bin/python3 make_nonfinite_fixtures.py

Writes nonfinite/<case>.safetensors, each holding the inputs and PyTorch's outputs under fixed names, and
nonfinite/manifest.json with each case's operation and parameters; NonFiniteParityTests runs every case on every
backend. Float32 throughout; PyTorch 1.13 CPU, one thread.
"""
import json
import os

import torch
import torch.nn.functional as F

from make_fixtures import save_safetensors

torch.manual_seed(4321)
torch.set_num_threads(1)
NAN, INF = float("nan"), float("inf")
OUT = "nonfinite"
os.makedirs(OUT, exist_ok=True)
manifest = {"torch": torch.__version__, "cases": {}}


def spiked(shape, spikes):
    """Random values with NaN, +∞ and −∞ placed at the given flat positions."""
    t = torch.randn(shape)
    flat = t.view(-1)
    for i, v in spikes:
        flat[i] = v
    return t


def case(name, op, tensors, **params):
    save_safetensors(f"{OUT}/{name}.safetensors", {k: v.detach().contiguous().float() for k, v in tensors.items()})
    manifest["cases"][name] = {"op": op, **params}


# Activations: y = f(x), dx = dy·f′ from autograd; x holds NaN, ±∞, ±0 and ordinary values, dy a NaN and an ∞ too.
x0 = torch.tensor([NAN, INF, -INF, 0.0, -0.0, 1.5, -1.5, 30.0, -30.0, 0.25, -0.25, 100.0])
dy0 = torch.tensor([1.0, 2.0, -1.0, 0.5, 0.5, NAN, 1.0, INF, 1.0, -2.0, 3.0, 1.0])
for spec, fn in [("relu", F.relu), ("leakyrelu(0.1)", lambda t: F.leaky_relu(t, 0.1)), ("sigmoid", torch.sigmoid),
                 ("tanh", torch.tanh), ("gelu", F.gelu), ("silu", F.silu)]:
    x = x0.clone().requires_grad_(True)
    y = fn(x)
    y.backward(dy0)
    case("act_" + spec.split("(")[0], "activation", {"x": x0, "dy": dy0, "y": y, "dx": x.grad}, spec=spec)

# ReLU6 on 16 values, 0 and 6 themselves and just past 6 among them: PyTorch's hardtanh_backward gives a NaN no gradient
# in its vectorised loop, which 16 values fill (8 or 16 lanes), but passes dy through in its scalar loop for a
# tensor's last few; the engine follows the vectorised loop, what a layer's tensors meet.
x6 = torch.cat([x0, torch.tensor([6.0, 5.5, 6.5, 3.0])])
dy6 = torch.cat([dy0, torch.tensor([1.0, -1.0, 2.0, 0.5])])
x = x6.clone().requires_grad_(True)
y = F.relu6(x)
y.backward(dy6)
case("act_relu6", "activation", {"x": x6, "dy": dy6, "y": y, "dx": x.grad}, spec="relu6")

# Max pooling with switches: NaN in windows (two in one), ±∞, padding; then the backward through the switches.
x = spiked([1, 2, 6, 7], [(0, NAN), (8, NAN), (9, INF), (16, -INF), (30, NAN), (31, NAN), (50, INF), (60, -INF), (61, -INF), (67, -INF), (68, -INF)])
for name, k, s, p in [("maxpool_2x2", 2, 2, 0), ("maxpool_3s2p1", 3, 2, 1)]:
    xr = x.clone().requires_grad_(True)
    y, idx = F.max_pool2d(xr, k, stride=s, padding=p, return_indices=True)
    dy = torch.randn_like(y)
    dy.view(-1)[1] = NAN
    y.backward(dy)
    case(name, "maxpool", {"x": x, "y": y, "switches": idx.float(), "dy": dy, "dx": xr.grad}, kernel=k, stride=s, pad=p)

# Average pooling (zero padding counted, as ours).
xr = x.clone().requires_grad_(True)
y = F.avg_pool2d(xr, 3, stride=2, padding=1, count_include_pad=True)
dy = torch.randn_like(y)
dy.view(-1)[2] = INF
y.backward(dy)
case("avgpool_3s2p1", "avgpool", {"x": x, "y": y, "dy": dy, "dx": xr.grad}, kernel=3, stride=2, pad=1)

# Convolution: NaN and ±∞ in x (borders included), NaN in dy at an interior position; forward, backward-data,
# backward-filter and bias. Weights stay finite and dy's NaN away from the border on purpose: a non-finite value
# meeting zero padding is 0·∞ or 0·NaN, which PyTorch's own algorithms resolve differently (a direct convolution
# skips the padding, an im2col one multiplies it); that case is not pinned.
x = spiked([2, 2, 6, 6], [(5, NAN), (40, INF), (100, -INF)]).requires_grad_(True)
w = torch.randn(3, 2, 3, 3, requires_grad=True)
b = torch.randn(3, requires_grad=True)
y = F.conv2d(x, w, b, stride=1, padding=1)
dy = torch.randn_like(y)
dy.view(-1)[51] = NAN
y.backward(dy)
case("conv2d", "conv2d", {"x": x, "w": w, "b": b, "y": y, "dy": dy, "dx": x.grad, "dw": w.grad, "db": b.grad}, stride=1, pad=1)

# GEMM: C = A·B with NaN and ∞ in A and B.
a = spiked([5, 7], [(3, NAN), (10, INF), (20, -INF)])
bm = spiked([7, 4], [(5, INF), (9, NAN)])
case("gemm", "gemm", {"a": a, "b": bm, "c": a @ bm})

# Softmax cross-entropy: a row with a NaN logit, one with +∞, one with −∞, and ordinary rows.
z = torch.randn(6, 5)
z[1, 2], z[2, 0], z[3, 4] = NAN, INF, -INF
labels = torch.tensor([0, 1, 0, 2, 4, 3])
zr = z.clone().requires_grad_(True)
loss = F.cross_entropy(zr, labels)
loss.backward()
case("softmax_ce", "softmax_ce", {"z": z, "labels": labels.float(), "loss": loss.reshape(1), "dz": zr.grad})

# Optimizers: one step from a gradient holding NaN and ∞ (SGD with momentum and weight decay; Adam).
p0 = torch.randn(8)
g = torch.randn(8)
g[1], g[4], g[6] = NAN, INF, -INF
for name, make, params in [("sgd", lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01), dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
                           ("adam", lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=0.001), dict(lr=0.01, weight_decay=0.001))]:
    p = p0.clone().requires_grad_(True)
    opt = make([p])
    p.grad = g.clone()
    opt.step()
    case("opt_" + name, name, {"p": p0, "g": g, "after": p.detach()}, **params)

# 2×2 windows at stride 2 over even planes (the ILGPU halving kernels take these; 6×7 above does not): NaN first in a
# window, NaN last after a larger finite value, NaN then +∞, two NaNs, +∞, all −∞; −∞ and NaN in the second channel.
# Drawn after every case above, so that their random values stay as they were.
x = spiked([1, 2, 6, 8], [(0, NAN), (2, 5.0), (11, NAN), (4, NAN), (13, INF), (7, NAN), (14, NAN), (17, INF), (18, -INF), (19, -INF),
                          (26, -INF), (27, -INF), (86, -INF), (95, NAN)])
xr = x.clone().requires_grad_(True)
y, idx = F.max_pool2d(xr, 2, stride=2, return_indices=True)
dy = torch.randn_like(y)
dy.view(-1)[3], dy.view(-1)[20] = NAN, INF
y.backward(dy)
case("maxpool_2x2_even", "maxpool", {"x": x, "y": y, "switches": idx.float(), "dy": dy, "dx": xr.grad}, kernel=2, stride=2, pad=0)
xr = x.clone().requires_grad_(True)
y = F.avg_pool2d(xr, 2, stride=2)
y.backward(dy)
case("avgpool_2x2_even", "avgpool", {"x": x, "y": y, "dy": dy, "dx": xr.grad}, kernel=2, stride=2, pad=0)

with open(f"{OUT}/manifest.json", "w") as f:
    json.dump(manifest, f, indent=2)
print("wrote", len(manifest["cases"]), "non-finite fixtures")
