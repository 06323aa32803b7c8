#!/usr/bin/python3
"""Loads a LeNet-5 safetensors file written by `gpucnn train` into a PyTorch nn.Sequential (strict
load_state_dict) and prints its accuracy on the bundled sample's test split: the "vice versa" of weight exchange.

    /usr/bin/python3 perf/torch/eval_gpucnn_lenet.py lenet5.safetensors
"""
import json, struct, sys, gzip, numpy as np, torch, torch.nn as nn
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
header = json.loads(raw[8:8 + n]); data = raw[8 + n:]
meta = header.pop("__metadata__")
state = {k: torch.tensor(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype="<f4").reshape(v["shape"])) for k, v in header.items()}
model = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
model.load_state_dict(state, strict=True)
def idx(p):
    d = gzip.open(p).read(); r = d[3]; dims = struct.unpack(">" + "I" * r, d[4:4 + 4 * r]); return np.frombuffer(d, np.uint8, offset=4 + 4 * r).reshape(dims)
x = torch.tensor(idx(__import__("os").path.join(__import__("os").path.dirname(__file__), "..", "..", "data", "mnist-sample", "t10k-images-idx3-ubyte.gz")), dtype=torch.float32).unsqueeze(1) / 255
y = torch.tensor(idx(__import__("os").path.join(__import__("os").path.dirname(__file__), "..", "..", "data", "mnist-sample", "t10k-labels-idx1-ubyte.gz")), dtype=torch.int64)
with torch.no_grad(): acc = (model(x).argmax(1) == y).float().mean().item()
print("metadata", meta); print(f"PyTorch accuracy of the gpucnn-trained model: {acc*100:.2f}%")
