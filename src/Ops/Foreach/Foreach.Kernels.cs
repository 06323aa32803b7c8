using ILGPU;

namespace GpuCnn.Kernels;

/// <summary>
/// Up to <see cref="Capacity"/> float tensors handed to one kernel launch, as PyTorch's multi_tensor_apply hands a
/// list of tensors to one CUDA launch: a struct of views, which ILGPU maps field by field (CUDA receives it as one
/// parameter of 32 × 16 bytes; an Adam launch's four lists and ends take 2.2 of CUDA's 4 KB of parameters). A kernel
/// picks a slot by its index (a switch; ILGPU has no arrays of views). Unused slots repeat a listed view,
/// which no thread indexes. 32 takes a ResNet-8's 29 parameter tensors in one launch.
/// </summary>
internal struct TensorList
{
    /// <summary>The most tensors one launch takes.</summary>
    public const int Capacity = 32;

    internal ArrayView<float> V0;
    internal ArrayView<float> V1;
    internal ArrayView<float> V2;
    internal ArrayView<float> V3;
    internal ArrayView<float> V4;
    internal ArrayView<float> V5;
    internal ArrayView<float> V6;
    internal ArrayView<float> V7;
    internal ArrayView<float> V8;
    internal ArrayView<float> V9;
    internal ArrayView<float> V10;
    internal ArrayView<float> V11;
    internal ArrayView<float> V12;
    internal ArrayView<float> V13;
    internal ArrayView<float> V14;
    internal ArrayView<float> V15;
    internal ArrayView<float> V16;
    internal ArrayView<float> V17;
    internal ArrayView<float> V18;
    internal ArrayView<float> V19;
    internal ArrayView<float> V20;
    internal ArrayView<float> V21;
    internal ArrayView<float> V22;
    internal ArrayView<float> V23;
    internal ArrayView<float> V24;
    internal ArrayView<float> V25;
    internal ArrayView<float> V26;
    internal ArrayView<float> V27;
    internal ArrayView<float> V28;
    internal ArrayView<float> V29;
    internal ArrayView<float> V30;
    internal ArrayView<float> V31;

    /// <summary>Slot <paramref name="slot"/>'s view.</summary>
    public readonly ArrayView<float> this[int slot] => slot switch
    {
        0 => V0,
        1 => V1,
        2 => V2,
        3 => V3,
        4 => V4,
        5 => V5,
        6 => V6,
        7 => V7,
        8 => V8,
        9 => V9,
        10 => V10,
        11 => V11,
        12 => V12,
        13 => V13,
        14 => V14,
        15 => V15,
        16 => V16,
        17 => V17,
        18 => V18,
        19 => V19,
        20 => V20,
        21 => V21,
        22 => V22,
        23 => V23,
        24 => V24,
        25 => V25,
        26 => V26,
        27 => V27,
        28 => V28,
        29 => V29,
        30 => V30,
        _ => V31,
    };

    /// <summary>Sets slot <paramref name="slot"/> (on the host, before the launch).</summary>
    public void Set(int slot, ArrayView<float> view)
    {
        switch (slot)
        {
            case 0: V0 = view; break;
            case 1: V1 = view; break;
            case 2: V2 = view; break;
            case 3: V3 = view; break;
            case 4: V4 = view; break;
            case 5: V5 = view; break;
            case 6: V6 = view; break;
            case 7: V7 = view; break;
            case 8: V8 = view; break;
            case 9: V9 = view; break;
            case 10: V10 = view; break;
            case 11: V11 = view; break;
            case 12: V12 = view; break;
            case 13: V13 = view; break;
            case 14: V14 = view; break;
            case 15: V15 = view; break;
            case 16: V16 = view; break;
            case 17: V17 = view; break;
            case 18: V18 = view; break;
            case 19: V19 = view; break;
            case 20: V20 = view; break;
            case 21: V21 = view; break;
            case 22: V22 = view; break;
            case 23: V23 = view; break;
            case 24: V24 = view; break;
            case 25: V25 = view; break;
            case 26: V26 = view; break;
            case 27: V27 = view; break;
            case 28: V28 = view; break;
            case 29: V29 = view; break;
            case 30: V30 = view; break;
            default: V31 = view; break;
        }
    }
}

/// <summary>
/// <see cref="TensorList.Capacity"/> integers handed to a kernel beside a <see cref="TensorList"/>: each slot's end in
/// a running count (of elements, or of chunks), so that a thread or group finds its slot from its index alone
/// (<see cref="SlotOf"/>), or a per-slot size. Unused slots repeat the last end.
/// </summary>
internal struct SlotInts
{
    internal int I0;
    internal int I1;
    internal int I2;
    internal int I3;
    internal int I4;
    internal int I5;
    internal int I6;
    internal int I7;
    internal int I8;
    internal int I9;
    internal int I10;
    internal int I11;
    internal int I12;
    internal int I13;
    internal int I14;
    internal int I15;
    internal int I16;
    internal int I17;
    internal int I18;
    internal int I19;
    internal int I20;
    internal int I21;
    internal int I22;
    internal int I23;
    internal int I24;
    internal int I25;
    internal int I26;
    internal int I27;
    internal int I28;
    internal int I29;
    internal int I30;
    internal int I31;

    /// <summary>Slot <paramref name="slot"/>'s value.</summary>
    public readonly int this[int slot] => slot switch
    {
        0 => I0,
        1 => I1,
        2 => I2,
        3 => I3,
        4 => I4,
        5 => I5,
        6 => I6,
        7 => I7,
        8 => I8,
        9 => I9,
        10 => I10,
        11 => I11,
        12 => I12,
        13 => I13,
        14 => I14,
        15 => I15,
        16 => I16,
        17 => I17,
        18 => I18,
        19 => I19,
        20 => I20,
        21 => I21,
        22 => I22,
        23 => I23,
        24 => I24,
        25 => I25,
        26 => I26,
        27 => I27,
        28 => I28,
        29 => I29,
        30 => I30,
        _ => I31,
    };

    /// <summary>Sets slot <paramref name="slot"/> (on the host, before the launch).</summary>
    public void Set(int slot, int value)
    {
        switch (slot)
        {
            case 0: I0 = value; break;
            case 1: I1 = value; break;
            case 2: I2 = value; break;
            case 3: I3 = value; break;
            case 4: I4 = value; break;
            case 5: I5 = value; break;
            case 6: I6 = value; break;
            case 7: I7 = value; break;
            case 8: I8 = value; break;
            case 9: I9 = value; break;
            case 10: I10 = value; break;
            case 11: I11 = value; break;
            case 12: I12 = value; break;
            case 13: I13 = value; break;
            case 14: I14 = value; break;
            case 15: I15 = value; break;
            case 16: I16 = value; break;
            case 17: I17 = value; break;
            case 18: I18 = value; break;
            case 19: I19 = value; break;
            case 20: I20 = value; break;
            case 21: I21 = value; break;
            case 22: I22 = value; break;
            case 23: I23 = value; break;
            case 24: I24 = value; break;
            case 25: I25 = value; break;
            case 26: I26 = value; break;
            case 27: I27 = value; break;
            case 28: I28 = value; break;
            case 29: I29 = value; break;
            case 30: I30 = value; break;
            default: I31 = value; break;
        }
    }

    /// <summary>
    /// The slot whose range holds <paramref name="index"/> when these are running ends: how many ends lie at or below
    /// it (31 comparisons and adds; the last end is never below an index that exists).
    /// </summary>
    public readonly int SlotOf(int index) =>
        (index >= I0 ? 1 : 0) +
        (index >= I1 ? 1 : 0) +
        (index >= I2 ? 1 : 0) +
        (index >= I3 ? 1 : 0) +
        (index >= I4 ? 1 : 0) +
        (index >= I5 ? 1 : 0) +
        (index >= I6 ? 1 : 0) +
        (index >= I7 ? 1 : 0) +
        (index >= I8 ? 1 : 0) +
        (index >= I9 ? 1 : 0) +
        (index >= I10 ? 1 : 0) +
        (index >= I11 ? 1 : 0) +
        (index >= I12 ? 1 : 0) +
        (index >= I13 ? 1 : 0) +
        (index >= I14 ? 1 : 0) +
        (index >= I15 ? 1 : 0) +
        (index >= I16 ? 1 : 0) +
        (index >= I17 ? 1 : 0) +
        (index >= I18 ? 1 : 0) +
        (index >= I19 ? 1 : 0) +
        (index >= I20 ? 1 : 0) +
        (index >= I21 ? 1 : 0) +
        (index >= I22 ? 1 : 0) +
        (index >= I23 ? 1 : 0) +
        (index >= I24 ? 1 : 0) +
        (index >= I25 ? 1 : 0) +
        (index >= I26 ? 1 : 0) +
        (index >= I27 ? 1 : 0) +
        (index >= I28 ? 1 : 0) +
        (index >= I29 ? 1 : 0) +
        (index >= I30 ? 1 : 0);

    /// <summary>Where slot <paramref name="slot"/>'s range begins when these are running ends.</summary>
    public readonly int Start(int slot) => slot == 0 ? 0 : this[slot - 1];
}

/// <summary>
/// Operations over lists of tensors in as few launches as <see cref="TensorList.Capacity"/> allows (PyTorch's foreach
/// and fused optimizers): an optimizer step or gradient clipping over a model's 10–30 parameter tensors was a launch
/// per tensor, each costing a GPU more than the work. Each kernel computes every element exactly as its single-tensor
/// kernel does (they share the per-element code), so both give the same bits. See src/Ops/README.md.
/// </summary>
internal static class ForeachKernels
{
    /// <summary>
    /// One SGD step over every listed tensor: thread i updates element i of the list's concatenation. Fused multiply-adds
    /// as PyTorch's: list launches run on CUDA and ILGPU's CPU accelerator only (not OpenCL), which have doubles.
    /// </summary>
    public static void SgdList(Index1D index, TensorList param, TensorList grad, TensorList velocity, SlotInts ends, SgdParams h)
    {
        int i = index, slot = ends.SlotOf(i);
        OptimizerKernels.SgdAt<FusedMultiplyAdd>(param[slot], grad[slot], velocity[slot], i - ends.Start(slot), h);
    }

    /// <summary>One Adam or AdamW step over every listed tensor (element i of the list's concatenation), as SgdList.</summary>
    public static void AdamList(Index1D index, TensorList param, TensorList grad, TensorList m, TensorList v, SlotInts ends, AdamParams h)
    {
        int i = index, slot = ends.SlotOf(i);
        OptimizerKernels.AdamAt<FusedMultiplyAdd>(param[slot], grad[slot], m[slot], v[slot], i - ends.Start(slot), h);
    }

    /// <summary>x *= coefficient[0] over every listed tensor.</summary>
    public static void ScaleByList(Index1D index, TensorList x, SlotInts ends, ArrayView<float> coefficient)
    {
        int i = index, slot = ends.SlotOf(i);
        x[slot][i - ends.Start(slot)] *= coefficient[0];
    }

    /// <summary>
    /// flat[i] = scale · x[t][i − start(t)]: the list's concatenation (flat is this launch's share of it); at scale 1 a
    /// copy of the bits (a multiply could quiet a NaN's payload, or flush a subnormal on a device without them).
    /// </summary>
    public static void CopyToFlat(Index1D index, TensorList x, SlotInts ends, ArrayView<float> flat, float scale)
    {
        int i = index, slot = ends.SlotOf(i);
        float v = x[slot][i - ends.Start(slot)];
        flat[i] = scale == 1f ? v : scale * v;
    }

    /// <summary>y[i] = scale · x[i]: one tensor's share of a flat copy, where lists run a tensor at a time (OpenCL).</summary>
    public static void ScaledCopy(Index1D index, ArrayView<float> x, ArrayView<float> y, float scale) =>
        y[index] = scale == 1f ? x[index] : scale * x[index]; // at scale 1 the bits, as CopyToFlat

    /// <summary>x[t][i − start(t)] = flat[i]: the concatenation back into the list.</summary>
    public static void CopyFromFlat(Index1D index, ArrayView<float> flat, TensorList x, SlotInts ends)
    {
        int i = index, slot = ends.SlotOf(i);
        x[slot][i - ends.Start(slot)] = flat[i];
    }

    /// <summary>
    /// The first pass of every listed tensor's squared norm: group g takes chunk g − chunkEnds.Start(t) of tensor
    /// t = chunkEnds.SlotOf(g), of chunkSizes[t] elements, and writes its sum to partial[g]
    /// (<see cref="GradNormKernels.ChunkSquares"/>, as the single-tensor kernel sums a chunk).
    /// </summary>
    public static void SquaredNormChunksList(TensorList x, SlotInts chunkEnds, SlotInts chunkSizes, ArrayView<float> partial)
    {
        int chunk = Grid.IdxX, slot = chunkEnds.SlotOf(chunk);
        float sum = GradNormKernels.ChunkSquares(x[slot], chunk - chunkEnds.Start(slot), chunkSizes[slot]);
        if (Group.IdxX == 0)
        {
            partial[chunk] = sum;
        }
    }

    /// <summary>
    /// The second pass: group t adds tensor t's chunks, partial[chunkEnds.Start(t) .. chunkEnds[t]), each lane a strided
    /// share and then a fixed tree (as <see cref="ReductionKernels.SumChunks"/> adds one tensor's), into
    /// sums[firstSlot + t].
    /// </summary>
    public static void SumChunksList(ArrayView<float> partial, SlotInts chunkEnds, ArrayView<float> sums, int firstSlot)
    {
        int slot = Grid.IdxX;
        float sum = 0f;
        for (int chunk = chunkEnds.Start(slot) + Group.IdxX; chunk < chunkEnds[slot]; chunk += Group.DimX)
        {
            sum += partial[chunk];
        }

        sum = ReductionKernels.GroupSum(sum);
        if (Group.IdxX == 0)
        {
            sums[firstSlot + slot] = sum;
        }
    }
}
