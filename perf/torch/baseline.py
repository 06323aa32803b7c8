#!/usr/bin/python3
"""PyTorch timings of the `gpucnn bench` rows, on the CPU or a CUDA GPU, for side-by-side ratios.

    /usr/bin/python3 perf/torch/baseline.py --device cpu  [--quick] [--json torch.json] [--ours gpucnn.json]
    python3 perf/torch/baseline.py --device cuda [--ours gpucnn.json]

Same shapes, names and FLOP counts as src/Cli/Bench/BenchSuite.cs. float32; on CUDA TF32 is disabled,
cudnn.benchmark = True and times come from CUDA events; on the CPU torch.set_num_threads(cores) (oneDNN for
convolutions, the system BLAS — OpenBLAS on Debian when libopenblas0 is installed — for matmul). Each row: warm-up,
then the median of repeated runs. With --ours, also prints our time over PyTorch's per row (below 1 = we are faster).

On the CPU it also prints which kernel OpenBLAS chose: Debian's 0.3.21 falls back to its SSE3 `Prescott` kernel on
processors newer than it knows (an Intel Xeon of 2026 ran gemm-1024 at 37 GFLOP/s so, 240 as `SkylakeX`), so a
fair baseline may need OPENBLAS_CORETYPE=SkylakeX (AVX-512) or Haswell (AVX2) — record which one the ratios used.
"""
import argparse
import ctypes
import json
import os
import time

import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lenet_mnist import resnet8  # noqa: E402 (the module sits beside this one)


def timer(device):
    if device == "cuda":
        def run(fn, reps):
            times = []
            for _ in range(reps):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            return times
    else:
        def run(fn, reps):
            times = []
            for _ in range(reps):
                t = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t) * 1e3)
            return times
    return run


def measure(fn, device):
    run = timer(device)
    warm = run(fn, 2)
    reps = int(min(20, max(3, 500 / max(min(warm), 1e-3))))
    times = sorted(run(fn, reps))
    return times[len(times) // 2], reps


def training_step(model, size, device):
    """One SGD-with-momentum step at rate 0 (every repetition sees the same weights) on a resident batch of 1×28×28 inputs."""
    model = model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
    xb = torch.rand(size, 1, 28, 28, device=device)
    yb = torch.arange(size, device=device) % 10

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def rows(quick, device):
    s = "-quick" if quick else ""
    out = []
    for n in (256, 1024, 4096):
        size = n // 8 if quick else n
        a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
        out.append((f"gemm-{n}{s}", 2.0 * size ** 3, lambda a=a, b=b: torch.mm(a, b)))
    convs = [
        ("conv-lenet1", (4 if quick else 64, 1, 28, 28, 6, 5, 2, 1)),
        ("conv-lenet2", (4 if quick else 64, 6, 14, 14, 16, 5, 0, 1)),
        ("conv3x3-64", (2, 16, 16, 16, 16, 3, 1, 1) if quick else (64, 64, 32, 32, 64, 3, 1, 1)),
        ("conv3x3-128", (2, 32, 8, 8, 32, 3, 1, 1) if quick else (32, 128, 16, 16, 128, 3, 1, 1)),
        ("conv3x3-64-7x7", (2, 16, 7, 7, 32, 3, 1, 1) if quick else (128, 64, 7, 7, 64, 3, 1, 1)),  # ResNet-8's last 3x3 layer
        ("conv3x3s2-64-7x7", (2, 32, 8, 8, 32, 3, 1, 2) if quick else (128, 32, 14, 14, 64, 3, 1, 2)),  # its stride-2 3x3 layer
        ("conv1x1s2-64", (4, 8, 8, 8, 16, 1, 0, 2) if quick else (128, 32, 14, 14, 64, 1, 0, 2)),  # ResNet-8's shortcut
        ("conv-dw3x3-64", (2, 8, 8, 8, 8, 3, 1, 1, 8) if quick else (64, 64, 28, 28, 64, 3, 1, 1, 64)),  # depthwise (groups last)
        ("conv-dw3x3s2-128", (2, 8, 8, 8, 8, 3, 1, 2, 8) if quick else (64, 128, 28, 28, 128, 3, 1, 2, 128)),  # MobileNet's downsampling one
    ]
    for name, (n, c, h, w, k, r, pad, stride, *grouped) in convs:
        groups = grouped[0] if grouped else 1
        x = torch.randn(n, c, h, w, device=device, requires_grad=True)
        weight = torch.randn(k, c // groups, r, r, device=device, requires_grad=True) * 0.1
        weight = weight.detach().requires_grad_(True)
        bias = torch.randn(k, device=device, requires_grad=True)
        p = (h + 2 * pad - r) // stride + 1
        flops = 2.0 * n * k * p * p * (c // groups) * r * r
        y = F.conv2d(x, weight, bias, padding=pad, stride=stride, groups=groups)
        dy = torch.randn_like(y)

        def forward(x=x, weight=weight, bias=bias, pad=pad, stride=stride, groups=groups):
            with torch.no_grad():
                F.conv2d(x, weight, bias, padding=pad, stride=stride, groups=groups)

        def backward(y=y, x=x, weight=weight, bias=bias, dy=dy):
            # backward-data + backward-filter + bias gradient, as the gpucnn row (the graph is kept, so no forward)
            torch.autograd.grad(y, (x, weight, bias), dy, retain_graph=True)

        out.append((f"{name}-fwd{s}", flops, forward))  # gpucnn's names: the -quick suffix last
        out.append((f"{name}-bwd{s}", 2 * flops, backward))
    shape = (4, 8, 16, 16) if quick else (64, 64, 32, 32)
    x = torch.randn(*shape, device=device, requires_grad=True)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    dy = torch.randn_like(y)
    out.append((f"maxpool2x2-fwd{s}", None, lambda x=x: F.max_pool2d(x.detach(), 2, return_indices=True)))
    out.append((f"maxpool2x2-bwd{s}", None, lambda dy=dy, idx=idx, x=x: F.max_unpool2d(dy, idx, 2, output_size=x.shape[2:])))
    out.append((f"avgpool2x2-fwd{s}", None, lambda x=x: F.avg_pool2d(x.detach(), 2)))
    # the gradient alone, as the gpucnn row: autograd's avg_pool2d_backward without a forward
    out.append((f"avgpool2x2-bwd{s}", None, lambda dy=dy, x=x: torch.ops.aten.avg_pool2d_backward(dy, x.detach(), [2, 2], [2, 2], [0, 0],
                                                                                               False, True, None)))
    for batch in (64, 256):
        size = batch // 16 if quick else batch
        model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                              nn.Linear(84, 10))
        step = training_step(model, size, device)
        conv1, conv2 = 2.0 * size * 6 * 784 * 25, 2.0 * size * 16 * 100 * 150
        dense = 2.0 * size * (400 * 120 + 120 * 84 + 84 * 10)
        out.append((f"lenet-step-{batch}{s}", conv1 * 2 + conv2 * 3 + dense * 3, step))
    size = 8 if quick else 128
    resnet_step = training_step(resnet8(1), size, device)  # gpucnn's resnet8, module for module (perf/torch/lenet_mnist.py), NCHW as ours
    # The convolutions' and the dense layer's FLOPs, forward and backward, as OperationCases.ResNet8StepFlops.
    convs = [(16, 784, 9), (16, 784, 144), (16, 784, 144), (32, 196, 144), (32, 196, 288), (32, 196, 16),
             (64, 49, 288), (64, 49, 576), (64, 49, 32)]
    forward = sum(2.0 * size * k * pixels * weights for k, pixels, weights in convs) + 2.0 * size * 64 * 10
    out.append((f"resnet8-step-128{s}", 3 * forward - 2.0 * size * 16 * 784 * 9, resnet_step))
    for name, shape in ((f"batchnorm-relu-16x28{s}", (size, 16, 28, 28)), (f"batchnorm1d-relu-512{s}", (16, 64) if quick else (256, 512))):
        # A batch norm + ReLU layer's training step, as OperationCases.BatchNormReluStep: batch statistics, then dx, dweight, dbias.
        c = shape[1]
        x = torch.randn(*shape, device=device, requires_grad=True)
        weight = torch.rand(c, device=device, requires_grad=True)
        bias = torch.rand(c, device=device, requires_grad=True)
        running_mean, running_var = torch.zeros(c, device=device), torch.ones(c, device=device)
        dy = torch.randn(*shape, device=device)

        def bn_relu(x=x, weight=weight, bias=bias, running_mean=running_mean, running_var=running_var, dy=dy):
            y = F.relu(F.batch_norm(x, running_mean, running_var, weight, bias, training=True, momentum=0.1, eps=1e-5))
            torch.autograd.grad(y, (x, weight, bias), dy)

        out.append((name, None, bn_relu))
    # clip_grad_norm_ over ResNet-8's parameter tensors, as OperationCases' clip-grad-norm-resnet8 (the same model's).
    params = [torch.zeros(p.numel(), device=device, requires_grad=True) for p in resnet8(1).parameters()]
    for p in params:
        p.grad = torch.randn(p.numel(), device=device)
    out.append((f"clip-grad-norm-resnet8{s}", None, lambda params=params: torch.nn.utils.clip_grad_norm_(params, 1.0)))
    # An SGD step over the same tensors, as OperationCases' sgd-resnet8 rows: foreach (one list, as ours) and a tensor at a time.
    for name, foreach in ((f"sgd-resnet8{s}", True), (f"sgd-resnet8-per-tensor{s}", False)):
        sgd = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4, foreach=foreach)
        sgd.step()  # the momentum buffers exist from here on, as ours are allocated up front
        out.append((name, None, sgd.step))
    # The loss of a 1,000-class head at batch 256, forward and backward (the loss and dlogits), as OperationCases' softmax-ce row.
    batch, classes = (16, 100) if quick else (256, 1000)
    z = ((torch.rand(batch, classes, device=device) * 2 - 1) * 30).requires_grad_()
    labels = torch.randint(0, classes, (batch,), device=device)
    out.append((f"softmax-ce-{256}x{1000}{s}", None, lambda z=z, labels=labels: torch.autograd.grad(F.cross_entropy(z, labels), z)))
    return out


def openblas_core():
    """The kernel the OpenBLAS that torch loaded chose (openblas_get_corename), or None where torch uses another BLAS."""
    torch.ones(2, 2) @ torch.ones(2, 2)  # loads the BLAS
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    for path in paths:
        try:
            corename = ctypes.CDLL(path).openblas_get_corename
        except (OSError, AttributeError):
            continue
        corename.restype = ctypes.c_char_p
        return corename().decode()
    return None


def cpu_flags():
    try:
        with open("/proc/cpuinfo") as info:
            return next((line.split(":", 1)[1].split() for line in info if line.startswith("flags")), [])
    except OSError:
        return []


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json")
    p.add_argument("--ours", help="gpucnn bench --json output to compare against")
    p.add_argument("--only", nargs="+", default=[], help="run only rows whose name starts with one of these prefixes, as gpucnn bench --only")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}")
    else:
        core = openblas_core()
        print(f"device: cpu, {a.threads} threads, torch {torch.__version__}, OpenBLAS kernel {core or 'none (another BLAS)'}"
              f"{' (OPENBLAS_CORETYPE=' + os.environ['OPENBLAS_CORETYPE'] + ')' if 'OPENBLAS_CORETYPE' in os.environ else ''}")
        flags, avx512 = cpu_flags(), ("SkylakeX", "Cooperlake", "SapphireRapids")
        if core and "OPENBLAS_CORETYPE" not in os.environ:
            if "avx512f" in flags and core not in avx512:
                print(f"warning: OpenBLAS runs its {core} kernel on a processor with AVX-512: matmul rows measure it without "
                      f"AVX-512; OPENBLAS_CORETYPE=SkylakeX selects its AVX-512 kernel")
            elif "avx2" in flags and core not in avx512 + ("Haswell", "Zen", "SkylakeX"):
                print(f"warning: OpenBLAS runs its {core} kernel on a processor with AVX2: matmul rows measure it without "
                      f"AVX2; OPENBLAS_CORETYPE=Haswell selects its AVX2 kernel")
    results = []
    print(f"{'name':<24} {'median ms':>12} {'GFLOP/s':>10}")
    for row in rows(a.quick, a.device):
        name, flops, fn = row[0], row[1], row[2]
        if a.only and not any(name.startswith(prefix) for prefix in a.only):
            continue
        ms, _ = measure(fn, a.device)
        gflops = flops / (ms * 1e6) if flops else None
        results.append({"name": name, "device": f"torch-{a.device}", "ms": round(ms, 4), "gflops": round(gflops, 2) if gflops else None})
        print(f"{name:<24} {ms:>12.3f} {gflops if gflops else '-':>10}" if not gflops else f"{name:<24} {ms:>12.3f} {gflops:>10.1f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
    if a.ours:
        with open(a.ours) as f:
            ours = {r["name"]: r for r in json.load(f)}
        print()
        print(f"{'name':<24} {'gpucnn ms':>10} {'torch ms':>10} {'ours/torch':>11}")
        for r in results:
            if r["name"] in ours:
                o = ours[r["name"]]
                print(f"{r['name']:<24} {o['ms']:>10.3f} {r['ms']:>10.3f} {o['ms'] / r['ms']:>11.2f}")


if __name__ == "__main__":
    main()
