"""Sums GPU time per kernel from `ncu --csv --page raw --metrics gpu__time_duration.sum` output (perf/gpu/check.sh).

Usage: python3 ncu_kernel_times.py NCU_CSV [ONCE_PER_STEP_KERNEL]
Prints each kernel's launches, total and mean microseconds and share of the profiled GPU time, largest first; with a
kernel that runs once per training step, also the GPU time per step.
"""
import csv
import sys
from collections import defaultdict


def main() -> None:
    path = sys.argv[1]
    once_per_step = sys.argv[2] if len(sys.argv) > 2 else None
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        rows = [r for r in csv.reader(f)]
    header_at = next(i for i, r in enumerate(rows) if "Kernel Name" in r)
    header = rows[header_at]
    name_col = header.index("Kernel Name")
    block_col = header.index("Block Size") if "Block Size" in header else None
    time_col = next(i for i, h in enumerate(header) if h.endswith("gpu__time_duration.sum"))
    unit = rows[header_at + 1][time_col] if header_at + 1 < len(rows) else ""
    scale = {"nsecond": 1e-3, "usecond": 1.0, "msecond": 1e3, "ns": 1e-3, "us": 1.0, "ms": 1e3}.get(unit, None)
    totals, counts = defaultdict(float), defaultdict(int)
    for r in rows[header_at + 1:]:
        if len(r) <= max(name_col, time_col):
            continue
        try:
            value = float(r[time_col].replace(",", ""))
        except ValueError:
            continue
        name = r[name_col].split("(")[0].strip()
        if block_col is not None:
            name += " " + r[block_col].replace(" ", "")  # the same method name in two kernel families differs here
        totals[name] += value * (scale if scale is not None else 1e-3)
        counts[name] += 1
    total = sum(totals.values())
    launches = sum(counts.values())
    print(f"{launches} launches, {total:.1f} us of GPU time (unit in the file: {unit or 'unknown, taken as ns'})")
    print(f"{'kernel':<60} {'launches':>8} {'total us':>10} {'mean us':>9} {'share':>7}")
    for name, t in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{name[:60]:<60} {counts[name]:>8} {t:>10.1f} {t / counts[name]:>9.2f} {t / total:>7.1%}")
    if once_per_step:
        steps = sum(c for n, c in counts.items() if once_per_step in n)
        if steps:
            print(f"{steps} steps ('{once_per_step}'): {total / steps:.1f} us of GPU time and {launches / steps:.0f} launches per step")


if __name__ == "__main__":
    main()
