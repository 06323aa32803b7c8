"""Compares two model files written by `gpucnn train` (safetensors, float32): the largest absolute difference over
every tensor, the largest relative to the tensor's largest magnitude, and whether the files hold the same bits.

Usage: python3 compare_models.py A.safetensors B.safetensors
"""
import sys

import numpy as np

from torch_parity import safetensors


def main() -> None:
    a, b = safetensors(sys.argv[1]), safetensors(sys.argv[2])
    if a.keys() != b.keys():
        print(f"!! different tensors: {sorted(a.keys() ^ b.keys())}")
        sys.exit(1)
    worst_abs, worst_rel, worst_name, identical = 0.0, 0.0, "", True
    for name in sorted(a):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        identical &= a[name].tobytes() == b[name].tobytes()
        diff = float(np.abs(x - y).max()) if x.size else 0.0
        scale = float(np.abs(x).max()) if x.size else 0.0
        if diff > worst_abs:
            worst_abs, worst_name = diff, name
        if scale > 0:
            worst_rel = max(worst_rel, diff / scale)
    print(f"{len(a)} tensors; bitwise identical: {identical}; max |diff| {worst_abs:.3g} ({worst_name or '-'}); "
          f"max |diff| / max |value| of a tensor {worst_rel:.3g}")


if __name__ == "__main__":
    main()
