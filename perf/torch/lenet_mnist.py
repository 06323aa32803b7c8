#!/usr/bin/python3
"""LeNet-5 (or, with --net convnet, a two-conv net of 32 and 64 3×3 channels; with --net resnet8, gpucnn's resnet8) on the bundled MNIST sample in PyTorch, with the same pipeline as `gpucnn train`:
pixels / 255 normalised with MNIST's mean 0.1307 and std 0.3081, PyTorch default init, SGD (lr, momentum), batch 64, shuffled each epoch, cross-entropy.
Prints per-epoch test accuracy and the whole process wall time, for side-by-side comparison.
On CUDA (`--device cuda`: TF32 off, cudnn.benchmark on) the dataset lives on the GPU, as in `gpucnn train`, and each
epoch's time ends with a device synchronisation.

    /usr/bin/python3 perf/torch/lenet_mnist.py [--epochs 4] [--lr 0.05] [--momentum 0.9] [--threads 2] [--seed 1] [--device cpu|cuda]
"""
import argparse
import gzip
import os
import struct
import time

START = time.perf_counter()

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


class Residual(nn.Module):
    """gpucnn's residual(BODY; SHORTCUT): body(x) + shortcut(x), an empty shortcut being the identity."""

    def __init__(self, body, shortcut=None):
        super().__init__()
        self.body = body
        self.shortcut = shortcut if shortcut is not None else nn.Sequential()

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


def resnet8(channels):
    """gpucnn's ArchitectureSpec.ResNet8 (`--arch resnet8`), module for module, so state-dict keys match too."""
    def conv(cin, cout, k, stride=1):
        return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)

    def block(cin, cout, stride):
        body = nn.Sequential(conv(cin, cout, 3, stride), nn.BatchNorm2d(cout), nn.ReLU(), conv(cout, cout, 3), nn.BatchNorm2d(cout))
        shortcut = nn.Sequential(conv(cin, cout, 1, stride), nn.BatchNorm2d(cout)) if stride != 1 else None
        return [Residual(body, shortcut), nn.ReLU()]

    return nn.Sequential(conv(channels, 16, 3), nn.BatchNorm2d(16), nn.ReLU(), *block(16, 16, 1), *block(16, 32, 2), *block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "data", "mnist-sample"))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--raw", action="store_true", help="pixels / 255 only, without the MNIST mean/std normalisation")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    p.add_argument("--weight-decay", type=float, default=None, help="default 0 for sgd, 0.01 for adamw (PyTorch's)")
    p.add_argument("--schedule", default="constant", choices=["constant", "cosine"], help="per epoch, as gpucnn's --schedule")
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment-crop", type=int, default=0, help="random crop after zero padding by this much (gpucnn's --augment crop=PAD)")
    p.add_argument("--channels-last", action="store_true",
                   help="run the model and its inputs in PyTorch's channels_last (NHWC) memory format; default: the contiguous NCHW format, as gpucnn")
    p.add_argument("--net", default="lenet", choices=["lenet", "convnet", "resnet8"],
                   help="convnet: gpucnn's conv(32,3,pad=1),relu,maxpool(2),conv(64,3,pad=1),relu,maxpool(2),flatten,dense(128),relu,dense(10)")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)
    if a.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cudnn.benchmark = True
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}")

    def load(prefix):
        x = torch.tensor(idx(os.path.join(a.data, f"{prefix}-images-idx3-ubyte.gz")), dtype=torch.float32) / 255
        if not a.raw:
            x = (x - 0.1307) / 0.3081
        y = torch.tensor(idx(os.path.join(a.data, f"{prefix}-labels-idx1-ubyte.gz")), dtype=torch.int64)
        return x.unsqueeze(1).to(device), y.to(device)

    xtr, ytr = load("train")
    xte, yte = load("t10k")
    if a.net == "lenet":
        model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(),
                              nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                              nn.Linear(84, 10)).to(device)
    elif a.net == "resnet8":
        model = resnet8(1).to(device)
    else:
        model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                              nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                              nn.Linear(128, 10)).to(device)
    memory_format = torch.channels_last if a.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=a.momentum, weight_decay=a.weight_decay or 0.0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.01 if a.weight_decay is None else a.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=a.epochs) if a.schedule == "cosine" else None
    pad = a.augment_crop
    for epoch in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(xtr), device=device)
        for i in range(0, len(xtr), a.batch_size):
            idx_ = perm[i:i + a.batch_size]
            x = xtr[idx_]
            if pad:  # a random crop of the zero-padded image per sample, as gpucnn's --augment crop=PAD (one gather);
                # gpucnn pads the raw pixels with 0 and normalises after, so here the padding is 0 in normalised terms
                padded = F.pad(x, (pad, pad, pad, pad), value=0.0 if a.raw else -0.1307 / 0.3081)
                count, height, width = len(x), x.shape[2], x.shape[3]
                rows = torch.randint(0, 2 * pad + 1, (count, 1), device=device) + torch.arange(height, device=device)
                cols = torch.randint(0, 2 * pad + 1, (count, 1), device=device) + torch.arange(width, device=device)
                x = padded[torch.arange(count, device=device)[:, None, None], :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
                # With one channel the gather's strides read as both layouts and PyTorch picks channels_last from them,
                # which then runs the whole network in NHWC (25 % faster on the CPU for ResNet-8): back to NCHW unless asked.
                x = x.clone(memory_format=memory_format)
            elif a.channels_last:
                x = x.contiguous(memory_format=memory_format)
            loss = F.cross_entropy(model(x), ytr[idx_], label_smoothing=a.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xte.contiguous(memory_format=memory_format)).argmax(1) == yte).float().mean().item()  # .item() synchronises
        if sched:
            sched.step()
        print(f"epoch {epoch}: test accuracy {acc * 100:.2f}% ({time.perf_counter() - t0:.2f} s)")
    print(f"test accuracy: {acc * 100:.2f}%")
    print(f"wall time: {time.perf_counter() - START:.2f} s (threads {a.threads})")


if __name__ == "__main__":
    main()
