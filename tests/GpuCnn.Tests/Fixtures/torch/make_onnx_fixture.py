#!/usr/bin/env python3
"""The PyTorch-exported ONNX fixture for OnnxImportTests: a Sequential CNN (conv, batch norm with moved running
statistics, ReLU, max and average pooling, flatten, linear, 1-D batch norm) exported by torch.onnx.export at opset 17
(the exporter folds the 2-D batch norm into its convolution; the 1-D one stays a BatchNormalization node), the input
it was given and PyTorch's logits for it.

    /usr/bin/python3 tests/GpuCnn.Tests/Fixtures/torch/make_onnx_fixture.py     # PyTorch 1.13 CPU (Debian's python3-torch)
"""
import os

import numpy as np
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))


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
    model.eval()
    with torch.no_grad():
        logits = model(x)
    torch.onnx.export(model, x, os.path.join(HERE, "torch_cnn.onnx"), opset_version=17, input_names=["input"],
                      output_names=["logits"], do_constant_folding=False, dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
    np.save(os.path.join(HERE, "torch_cnn.input.npy"), x.numpy())
    np.save(os.path.join(HERE, "torch_cnn.logits.npy"), logits.numpy())
    print("wrote torch_cnn.onnx, torch_cnn.input.npy, torch_cnn.logits.npy")


if __name__ == "__main__":
    main()
