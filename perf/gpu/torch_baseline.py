#!/usr/bin/env python3
"""PyTorch/cuDNN timings of the gpucnn bench rows on the GPU: perf/torch/baseline.py with --device cuda.

    python3 perf/gpu/torch_baseline.py [--json torch.json] [--ours gpucnn-cuda.json] [--quick]
"""
import os
import runpy
import sys

if "--device" not in sys.argv:
    sys.argv[1:1] = ["--device", "cuda"]
runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torch", "baseline.py"), run_name="__main__")
