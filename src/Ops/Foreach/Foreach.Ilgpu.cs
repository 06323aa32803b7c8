using GpuCnn.Kernels;

namespace GpuCnn.Ilgpu;

/// <summary>
/// The tensor-list operations on an ILGPU accelerator (compiled into GpuCnn.Engine): up to
/// <see cref="TensorList.Capacity"/> tensors per launch, so that a ResNet-8's 29 parameter tensors take one launch
/// where they took 29.
/// </summary>
public sealed partial class IlgpuBackend
{
    /// <summary>
    /// Whether the tensor-list operations launch once per 32 tensors (the default) or once per tensor, as before them
    /// (to time the two against each other on a GPU, or to step around a device that refuses the list kernels);
    /// GPUCNN_TENSOR_LISTS=0|1 sets it for a process. OpenCL always runs a tensor at a time: ILGPU passes every view
    /// inside a struct there as a kernel argument of its own (128 for Adam, over the 1 KB of parameters the OpenCL
    /// standard guarantees).
    /// </summary>
    public bool TensorListLaunches { get; set; } = true;

    private bool ListsInOneLaunch => TensorListLaunches && _accelerator.AcceleratorType != ILGPU.Runtime.AcceleratorType.OpenCL;

    /// <inheritdoc/>
    protected override void SgdUpdateCore(SgdParams h, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> velocities)
    {
        if (!ListsInOneLaunch)
        {
            base.SgdUpdateCore(h, parameters, gradients, velocities);
            return;
        }

        for (int first = 0, count; first < parameters.Count; first += count)
        {
            count = ElementBatch(parameters, first, out var ends);
            _launch.Run(ForeachKernels.SgdList, ends[count - 1], ListOf(parameters, first, count), ListOf(gradients, first, count),
                ListOf(velocities, first, count), ends, h);
        }
    }

    /// <inheritdoc/>
    protected override void AdamUpdateCore(AdamParams h, IReadOnlyList<DeviceTensor<float>> parameters,
        IReadOnlyList<DeviceTensor<float>> gradients, IReadOnlyList<DeviceTensor<float>> firstMoments,
        IReadOnlyList<DeviceTensor<float>> secondMoments)
    {
        if (!ListsInOneLaunch)
        {
            base.AdamUpdateCore(h, parameters, gradients, firstMoments, secondMoments);
            return;
        }

        for (int first = 0, count; first < parameters.Count; first += count)
        {
            count = ElementBatch(parameters, first, out var ends);
            _launch.Run(ForeachKernels.AdamList, ends[count - 1], ListOf(parameters, first, count), ListOf(gradients, first, count),
                ListOf(firstMoments, first, count), ListOf(secondMoments, first, count), ends, h);
        }
    }

    /// <inheritdoc/>
    protected override void ScaleByCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> coefficient)
    {
        if (!ListsInOneLaunch)
        {
            base.ScaleByCore(xs, coefficient);
            return;
        }

        for (int first = 0, count; first < xs.Count; first += count)
        {
            count = ElementBatch(xs, first, out var ends);
            _launch.Run(ForeachKernels.ScaleByList, ends[count - 1], ListOf(xs, first, count), ends, View(coefficient));
        }
    }

    /// <inheritdoc/>
    protected override void CopyToFlatCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> flat, float scale)
    {
        if (!ListsInOneLaunch)
        {
            for (int i = 0, at = 0; i < xs.Count; at += xs[i].Length, i++)
            {
                _launch.Run(ForeachKernels.ScaledCopy, xs[i].Length, View(xs[i]), View(flat).SubView(at, xs[i].Length), scale);
            }

            return;
        }

        for (int first = 0, count, at = 0; first < xs.Count; first += count)
        {
            count = ElementBatch(xs, first, out var ends);
            _launch.Run(ForeachKernels.CopyToFlat, ends[count - 1], ListOf(xs, first, count), ends, View(flat).SubView(at, ends[count - 1]), scale);
            at += ends[count - 1];
        }
    }

    /// <inheritdoc/>
    protected override void CopyFromFlatCore(DeviceTensor<float> flat, IReadOnlyList<DeviceTensor<float>> xs)
    {
        if (!ListsInOneLaunch)
        {
            for (int i = 0, at = 0; i < xs.Count; at += xs[i].Length, i++)
            {
                _launch.Run(ForeachKernels.ScaledCopy, xs[i].Length, View(flat).SubView(at, xs[i].Length), View(xs[i]), 1f);
            }

            return;
        }

        for (int first = 0, count, at = 0; first < xs.Count; first += count)
        {
            count = ElementBatch(xs, first, out var ends);
            _launch.Run(ForeachKernels.CopyFromFlat, ends[count - 1], View(flat).SubView(at, ends[count - 1]), ListOf(xs, first, count), ends);
            at += ends[count - 1];
        }
    }

    /// <inheritdoc/>
    /// <remarks>
    /// Each tensor is cut into the chunks <see cref="SquaredNormCore(DeviceTensor{float}, DeviceTensor{float}, int)"/>
    /// cuts it into, summed by a group as large as the largest chunk needs: a smaller tensor's threads beyond its chunk
    /// add zeros, which leave the tree's sums as they were, so every tensor's sum has the single-tensor bits.
    /// </remarks>
    protected override void SquaredNormsCore(IReadOnlyList<DeviceTensor<float>> xs, DeviceTensor<float> sums)
    {
        if (!ListsInOneLaunch)
        {
            base.SquaredNormsCore(xs, sums);
            return;
        }

        for (int first = 0, count; first < xs.Count; first += count)
        {
            SlotInts chunkEnds = default, chunkSizes = default;
            int chunksInAll = 0, largestChunk = 1, mostChunks = 1;
            for (count = 0; count < TensorList.Capacity && first + count < xs.Count; count++)
            {
                var (chunks, chunkSize) = ChannelChunks(1, xs[first + count].Length);
                chunksInAll += chunks; // at most 1,024 chunks a tensor
                chunkEnds.Set(count, chunksInAll);
                chunkSizes.Set(count, chunkSize);
                (largestChunk, mostChunks) = (Math.Max(largestChunk, chunkSize), Math.Max(mostChunks, chunks));
            }

            for (int slot = count; slot < TensorList.Capacity; slot++)
            {
                chunkEnds.Set(slot, chunksInAll);
            }

            // One chunk each: the first pass's sums are the norms (group g is tensor g), as in the single-tensor form.
            var partial = mostChunks == 1 ? View(sums).SubView(first, count) : _workspace.Get(IlgpuWorkspace.Slot.Partials, chunksInAll);
            _launch.NextSerial((largestChunk + 255) / 256);
            _launch.Run(ForeachKernels.SquaredNormChunksList, Reduction(chunksInAll, largestChunk), ListOf(xs, first, count), chunkEnds, chunkSizes, partial);
            if (mostChunks > 1)
            {
                _launch.NextSerial((mostChunks + 255) / 256);
                _launch.Run(ForeachKernels.SumChunksList, Reduction(count, mostChunks), partial, chunkEnds, View(sums), first);
            }
        }
    }

    /// <summary>
    /// How many tensors from <paramref name="first"/> on the next launch takes — at most <see cref="TensorList.Capacity"/>,
    /// at most <see cref="Shape.MaximumElements"/> elements in all (one thread each, within what a launch takes: a batch
    /// refused by the launcher would leave the list half stepped) — and their running ends (unused slots repeat the last).
    /// </summary>
    private static int ElementBatch(IReadOnlyList<DeviceTensor<float>> tensors, int first, out SlotInts ends)
    {
        ends = default;
        int count = 0, total = 0;
        while (count < TensorList.Capacity && first + count < tensors.Count && (long)total + tensors[first + count].Length <= Shape.MaximumElements)
        {
            total += tensors[first + count].Length;
            ends.Set(count++, total);
        }

        for (int slot = count; slot < TensorList.Capacity; slot++)
        {
            ends.Set(slot, total);
        }

        return count;
    }

    /// <summary>
    /// The views of tensors first … first + count − 1, each exactly its tensor's length; unused slots repeat the first
    /// (a valid view that no thread indexes, rather than an empty one for the launch to map).
    /// </summary>
    private static TensorList ListOf(IReadOnlyList<DeviceTensor<float>> tensors, int first, int count)
    {
        TensorList list = default;
        for (int slot = 0; slot < TensorList.Capacity; slot++)
        {
            var tensor = tensors[first + (slot < count ? slot : 0)];
            list.Set(slot, View(tensor).SubView(0, tensor.Length));
        }

        return list;
    }
}
