#!/usr/bin/python3
"""Loads a safetensors file written by `gpucnn train` into the equivalent PyTorch module (strict load_state_dict,
batch-norm buffers and int64 num_batches_tracked included), applies the input normalisation in its metadata, and
prints its accuracy in eval mode on an MNIST test split: the "vice versa" of weight exchange.

    /usr/bin/python3 perf/torch/eval_gpucnn_model.py lenet5.safetensors [--net lenet|resnet8] [--data DIR]
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
from lenet_mnist import resnet8  # noqa: E402


def idx(path):
    d = gzip.open(path).read()
    r = d[3]
    dims = struct.unpack(">" + "I" * r, d[4:4 + 4 * r])
    return np.frombuffer(d, np.uint8, offset=4 + 4 * r).reshape(dims)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--net", default="lenet", choices=["lenet", "resnet8"])
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "data", "mnist-sample"))
    a = p.parse_args()
    raw = open(a.model, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    meta = header.pop("__metadata__")
    dtypes = {"F32": "<f4", "I64": "<i8"}
    state = {k: torch.tensor(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dtypes[v["dtype"]]).reshape(v["shape"]).copy())
             for k, v in header.items()}
    if a.net == "lenet":
        model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                              nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    else:
        model = resnet8(1)
    model.load_state_dict(state, strict=True)
    model.eval()
    x = torch.tensor(idx(os.path.join(a.data, "t10k-images-idx3-ubyte.gz")), dtype=torch.float32).unsqueeze(1) / 255
    y = torch.tensor(idx(os.path.join(a.data, "t10k-labels-idx1-ubyte.gz")), dtype=torch.int64)
    if "normalize" in meta:  # C means then C standard deviations, applied as torchvision's Normalize
        values = [float(v) for v in meta["normalize"].split(",")]
        c = len(values) // 2
        x = (x - torch.tensor(values[:c]).view(1, c, 1, 1)) / torch.tensor(values[c:]).view(1, c, 1, 1)
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    print("metadata", meta)
    print(f"PyTorch accuracy of the gpucnn-trained model: {acc * 100:.2f}% ({len(y)} samples)")


if __name__ == "__main__":
    main()
