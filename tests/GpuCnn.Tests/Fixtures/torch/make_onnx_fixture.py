#!/usr/bin/env python3
"""The PyTorch-exported ONNX fixtures for OnnxImportTests, each with the input it was given and PyTorch's logits for it:

- torch_cnn: a Sequential CNN (conv, batch norm with moved running statistics, ReLU, max and average pooling, flatten,
  linear, 1-D batch norm) exported by torch.onnx.export at opset 17 (the exporter folds the 2-D batch norm into its
  convolution; the 1-D one stays a BatchNormalization node);
- torch_fresh: what the exporter writes differently for two common layers: AvgPool2d(padding=1) (count_include_pad,
  the default) as a Pad of zeros and an AveragePool, and a freshly made BatchNorm1d, whose running_var and weight (all
  ones) and running_mean and bias (all zeros) it stores once each, reaching the second name through an Identity node;
- torch_act: GELU and SiLU, which opset 17 has no operator for: the exporter writes them out (Div by √2, Erf, Add 1,
  Mul by x, Mul by ½; Sigmoid and Mul by x), with its own constants;
- torch_cumulative: a BatchNorm1d with momentum=None (a cumulative average in training), which the exporter writes as
  momentum 1, as it would momentum=0.
- torch_pad: ZeroPad2d one-sided before a strided convolution (TensorFlow's "same" at stride 2: a pad layer, as
  PyTorch's module is one), ConstantPad2d of 0.5 with a crop, ZeroPad2d(1)
  before a max pool (zeros the maximum takes: a pad layer, not the pool's padding); torch_pad_folded the same model
  exported with the exporter's constant folding on (its default), which leaves the pads' chain from the Slice on;
- torch_mobile: a small MobileNetV2 (a strided stem, two inverted residual blocks — 1x1 expansion, ReLU6, depthwise
  3x3, ReLU6, linear 1x1 projection, identity shortcut — a 1x1 head, global pooling, dropout, linear), batch norm
  statistics moved and weights large enough that ReLU6 clips at 6; the exporter folds each batch norm into its
  convolution and writes ReLU6 as a Clip to [0, 6];
- torch_view_batch and torch_view_static: a net that flattens with x.view(x.size(0), -1), exported with a dynamic
  batch (the batch taken from the tensor's Shape in nodes) and with a fixed one ((3, -1) from constants);
- torch_view: the LeNet of PyTorch's "60-minute blitz" tutorial, an nn.Module whose forward flattens with
  x.view(-1, 16 * 4 * 4) (a Reshape to (−1, features) before the first Linear) and calls F.relu and F.max_pool2d.

    /usr/bin/python3 tests/GpuCnn.Tests/Fixtures/torch/make_onnx_fixture.py     # PyTorch 1.13 CPU (Debian's python3-torch)
"""
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


class TutorialNet(nn.Module):
    """PyTorch's tutorial LeNet (for 28×28 inputs): layers called in forward, x.view(-1, features) before fc1."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = x.view(-1, 16 * 4 * 4)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class InvertedResidual(nn.Module):
    """MobileNetV2's block with an identity shortcut: x + project(depthwise(expand(x)))."""

    def __init__(self, channels, expansion):
        super().__init__()
        hidden = channels * expansion
        self.block = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x):
        return x + self.block(x)


class SizeViewNet(nn.Module):
    """Flattens with x.view(x.size(0), -1), as much PyTorch code does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        x = F.relu(self.conv(x))
        return self.fc(x.view(x.size(0), -1))


def write(model, x, name, fold=False, dynamic=True):
    """Exports the model (in evaluation mode) with x as its example input, and saves x and PyTorch's logits for it."""
    model.eval()
    with torch.no_grad():
        logits = model(x)
    axes = {"input": {0: "N"}, "logits": {0: "N"}} if dynamic else None
    torch.onnx.export(model, x, os.path.join(HERE, f"{name}.onnx"), opset_version=17, input_names=["input"],
                      output_names=["logits"], do_constant_folding=fold, dynamic_axes=axes)
    np.save(os.path.join(HERE, f"{name}.input.npy"), x.numpy())
    np.save(os.path.join(HERE, f"{name}.logits.npy"), logits.numpy())
    print(f"wrote {name}.onnx, {name}.input.npy, {name}.logits.npy")


def main():
    torch.manual_seed(17)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(4, 6, 3), nn.LeakyReLU(0.1), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Linear(8, 3))
    x = torch.rand(5, 1, 10, 10)
    model.train()
    for _ in range(3):  # move the batch-norm running statistics off 0 and 1
        model(torch.rand(6, 1, 10, 10))
    write(model, x, "torch_cnn")

    torch.manual_seed(18)
    fresh = nn.Sequential(
        nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AvgPool2d(2, padding=1),
        nn.Flatten(), nn.Linear(3 * 5 * 5, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    write(fresh, torch.rand(4, 1, 10, 10), "torch_fresh")

    torch.manual_seed(19)
    act = nn.Sequential(nn.Conv2d(1, 4, 3), nn.GELU(), nn.Conv2d(4, 4, 3), nn.SiLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    write(act, torch.rand(3, 1, 8, 8), "torch_act")

    torch.manual_seed(20)
    cumulative = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6, momentum=None), nn.ReLU(), nn.Linear(6, 3))
    cumulative.train()
    for _ in range(3):
        cumulative(torch.rand(5, 1, 3, 4))
    write(cumulative, torch.rand(4, 1, 3, 4), "torch_cumulative")

    torch.manual_seed(21)
    pad = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(2, 4, 3, stride=2), nn.ReLU(), nn.ConstantPad2d((1, -1, 2, 0), 0.5),
                        nn.ZeroPad2d(1), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(4 * 4 * 2, 3))
    write(pad, torch.randn(3, 2, 8, 7), "torch_pad")
    write(pad, torch.randn(3, 2, 8, 7), "torch_pad_folded", fold=True)  # the exporter's default: part of the chain folded

    torch.manual_seed(22)
    write(TutorialNet(), torch.rand(2, 1, 28, 28), "torch_view")

    torch.manual_seed(24)
    size_view = SizeViewNet()
    write(size_view, torch.rand(3, 1, 8, 8), "torch_view_batch")  # the batch from Shape → Gather → Unsqueeze → Concat
    write(size_view, torch.rand(3, 1, 8, 8), "torch_view_static", dynamic=False)  # the batch a constant, 3 (Unsqueezes, a Concat)

    torch.manual_seed(23)
    mobile = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU6(),
        InvertedResidual(8, 4), InvertedResidual(8, 4),
        nn.Conv2d(8, 16, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(16, 5))
    mobile.train()
    for _ in range(3):  # move the batch-norm running statistics off 0 and 1
        mobile(torch.rand(4, 3, 16, 16))
    for m in mobile.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(2.0, 6.0)  # so that ReLU6 clips at 6 as well as at 0
    write(mobile, torch.rand(3, 3, 16, 16), "torch_mobile")


if __name__ == "__main__":
    main()
