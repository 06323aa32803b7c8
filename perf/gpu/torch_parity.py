#!/usr/bin/env python3
"""The PyTorch parity fixtures (tests/GpuCnn.Tests/Fixtures/torch) run through the gpucnn CLI on a device without
.NET: what TorchParityTests checks on the CPU backends, for the GPU machine where only the published CLI exists.

    python3 perf/gpu/torch_parity.py GPUCNN_EXECUTABLE [--device cuda]

Predict cases: our logits against PyTorch's. Train cases: the weights after one step (SGD or Adam) against
PyTorch's. Same tolerance as the tests: |ours − theirs| ≤ 1e-5 + 1e-4·|theirs|. Exit code 1 if any case fails.
"""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "GpuCnn.Tests", "Fixtures", "torch")


def safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    dtypes = {"F32": "<f4", "I64": "<i8"}  # float tensors, and batch norm's num_batches_tracked counter
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=dtypes[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def close(ours, theirs):
    diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
    return bool(np.all(diff <= 1e-5 + 1e-4 * np.abs(theirs))), float(diff.max()) if diff.size else 0.0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("gpucnn")
    p.add_argument("--device", default="cuda")
    a = p.parse_args()
    manifest = json.load(open(os.path.join(HERE, "manifest.json")))
    failures = 0
    tmp = tempfile.mkdtemp()
    for name, case in manifest["predict"].items():
        out = os.path.join(tmp, f"{name}.npy")
        run = subprocess.run([a.gpucnn, "predict", "--model", os.path.join(HERE, f"{name}.weights.safetensors"), "--input",
                              os.path.join(HERE, f"{name}.input.npy"), "--output", out, "--arch", case["arch"], "--device", a.device],
                             capture_output=True, text=True)
        ok, worst = (False, float("nan")) if run.returncode else close(np.load(out), np.load(os.path.join(HERE, f"{name}.logits.npy")))
        failures += not ok
        print(f"predict {name:<12} max |diff| {worst:.2e}  {'pass' if ok else 'FAIL ' + run.stderr.strip()}")
    for name, case in manifest["train"].items():
        out = os.path.join(tmp, f"{name}.after.safetensors")
        args = [a.gpucnn, "train", "--arch", case["arch"], "--init", os.path.join(HERE, f"{name}.init.safetensors"),
                "--images", os.path.join(HERE, f"{name}.images.npy"), "--labels", os.path.join(HERE, f"{name}.labels.npy"),
                "--epochs", str(case.get("epochs", 1)), "--batch-size", str(case["count"]), "--optimizer", case["optimizer"], "--lr", repr(case["lr"]),
                "--weight-decay", repr(case["weight_decay"]), "--device", a.device, "--out", out]
        if case["optimizer"] == "sgd":
            args += ["--momentum", repr(case["momentum"])]
        # Several full-batch steps (one per epoch) under a schedule with warm-up, label smoothing and gradient clipping,
        # where the case has them.
        for key in ("schedule", "step_size", "gamma", "warmup", "label_smoothing", "clip_grad_norm"):
            if key in case:
                args += ["--" + key.replace("_", "-"), str(case[key])]
        run = subprocess.run(args, capture_output=True, text=True)
        ok, worst = False, float("nan")
        if run.returncode == 0:
            ours, theirs = safetensors(out), safetensors(os.path.join(HERE, f"{name}.after.safetensors"))
            results = [close(ours[k], v) for k, v in theirs.items()] if ours.keys() == theirs.keys() else [(False, float("nan"))]
            ok, worst = all(r[0] for r in results), max(r[1] for r in results)
        failures += not ok
        print(f"train   {name:<12} max |diff| {worst:.2e}  {'pass' if ok else 'FAIL ' + run.stderr.strip()}")
    print(f"{'all parity cases passed' if failures == 0 else f'{failures} parity case(s) FAILED'} on {a.device}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
