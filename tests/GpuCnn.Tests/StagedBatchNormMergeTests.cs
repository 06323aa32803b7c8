using GpuCnn.Ilgpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Batch norm's merges of its chunks staged in shared memory (<see cref="IlgpuBackend.StagedBatchNormMerge"/>, on by
/// default) add the same sums in the same order as the merges from memory, so every output —
/// mean, invStd, running statistics, y, dweight, dbias, dx — must have the same bits. Each case forces its chunks a
/// channel (<see cref="IlgpuBackend.ReductionChunks"/>): a few, and enough that a group stages more floats than it has
/// threads (40 floats over the CPU accelerator's 16 threads; 1,200 over a GPU's 256).
/// </summary>
public abstract class StagedBatchNormMergeTests(BackendFixture fixture)
{
    [Theory]
    [InlineData(3, 2, 3, 4, 5)] // (N, C, H, W): 40 values a channel in chunks of 14
    [InlineData(20, 4, 2, 40, 30)] // 4,800 values a channel in chunks of 240
    [InlineData(600, 2, 1, 50, 48)] // 4,800 values in chunks of 8
    [InlineData(3, 9, 37)] // (N, features)
    public void Staged_merges_give_the_same_bits_as_merges_from_memory(int chunks, params int[] dims)
    {
        var backend = (IlgpuBackend)fixture.Require();
        int? chunksBefore = backend.ReductionChunks;
        backend.ReductionChunks = chunks;
        try
        {
            Compare(backend, chunks, dims);
        }
        finally
        {
            backend.ReductionChunks = chunksBefore;
        }
    }

    [Fact]
    public void A_channel_of_one_chunk_is_merged_from_memory_even_with_staging_on()
    {
        var backend = (IlgpuBackend)fixture.Require();
        int? chunksBefore = backend.ReductionChunks;
        bool stagedBefore = backend.StagedBatchNormMerge;
        backend.ReductionChunks = 1;
        backend.StagedBatchNormMerge = true;
        try
        {
            var shape = new Shape(4, 3, 5, 5);
            var s = GradientCheckTests.BatchNormShapeOf(shape, training: true);
            var data = new BackendOpsTests.FusedBatchNormData(s, TestData.Uniform(shape.Size, 71), TestData.Uniform(shape.Size, 72),
                TestData.Uniform(s.Channels, 73), TestData.Uniform(s.Channels, 74), new float[s.Channels], new float[s.Channels]);
            using var t = new BackendOpsTests.FusedBatchNormTensors(backend, data, shape);
            var kernels = backend.PlanLaunches(backend.Profile, () => TrainingStep(backend, t)).Select(r => r.Kernel).ToList();
            Assert.True(kernels.Contains("MergeStatistics") && kernels.Contains("MergeGradientSums") && !kernels.Any(k => k.EndsWith("Staged", StringComparison.Ordinal)),
                $"one chunk a channel: {string.Join(", ", kernels)}");
        }
        finally
        {
            backend.ReductionChunks = chunksBefore;
            backend.StagedBatchNormMerge = stagedBefore;
        }
    }

    /// <summary>Batch norm's training step on the tensors: statistics and y forward, dx, dweight and dbias backward.</summary>
    private static void TrainingStep(IlgpuBackend backend, BackendOpsTests.FusedBatchNormTensors t)
    {
        backend.BatchNormForward(true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
        backend.BatchNormBackward(true, t.X, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
    }

    private static void Compare(IlgpuBackend backend, int chunks, int[] dims)
    {
        var shape = new Shape(dims);
        var s = GradientCheckTests.BatchNormShapeOf(shape, training: true);
        float[] x = TestData.Uniform(shape.Size, 61, -3f, 5f), dy = TestData.Uniform(shape.Size, 62);
        float[] weight = TestData.Uniform(s.Channels, 63, 0.5f, 1.5f), bias = TestData.Uniform(s.Channels, 64);
        float[] runningMean = TestData.Uniform(s.Channels, 65), runningVar = TestData.Uniform(s.Channels, 66, 0.5f, 2f);
        var data = new BackendOpsTests.FusedBatchNormData(s, x, dy, weight, bias, runningMean, runningVar);

        var fromMemory = Run(staged: false, "MergeStatistics", "MergeGradientSums");
        var staged = Run(staged: true, "MergeStatisticsStaged", "MergeGradientSumsStaged");
        foreach (string name in fromMemory.Keys)
        {
            Assert.True(fromMemory[name].Select(BitConverter.SingleToInt32Bits).SequenceEqual(staged[name].Select(BitConverter.SingleToInt32Bits)),
                $"{backend.Name} batch norm {shape}, {chunks} chunks a channel: the staged merge's {name} differs from the merge from memory's in its bits");
        }

        Dictionary<string, float[]> Run(bool staged, string statistics, string gradientSums)
        {
            bool before = backend.StagedBatchNormMerge;
            backend.StagedBatchNormMerge = staged;
            try
            {
                using var t = new BackendOpsTests.FusedBatchNormTensors(backend, data, shape);
                var plan = backend.PlanLaunches(backend.Profile, () => TrainingStep(backend, t)).ToList();
                var kernels = plan.Select(r => r.Kernel).ToList();
                Assert.Contains(statistics, kernels);
                Assert.Contains(gradientSums, kernels);
                var merge = plan.Single(r => r.Kernel == statistics);
                Assert.True(staged ? merge.Groups == s.Channels : merge.SerialLoop == 2L * chunks, $"{statistics}: {merge}");
                Assert.True(kernels.Count(k => k == "ChunkStatistics") == 1 && kernels.Count(k => k == "ChunkGradientSums") == 1,
                    $"one chunked pass each way: {string.Join(", ", kernels)}");

                TrainingStep(backend, t);
                return new()
                {
                    ["mean"] = backend.DownloadArray(t.Mean),
                    ["invStd"] = backend.DownloadArray(t.InvStd),
                    ["running mean"] = backend.DownloadArray(t.RunningMean),
                    ["running var"] = backend.DownloadArray(t.RunningVar),
                    ["y"] = backend.DownloadArray(t.Y),
                    ["dweight"] = backend.DownloadArray(t.Dweight),
                    ["dbias"] = backend.DownloadArray(t.Dbias),
                    ["dx"] = backend.DownloadArray(t.Dx),
                };
            }
            finally
            {
                backend.StagedBatchNormMerge = before;
            }
        }
    }
}

/// <summary>ILGPU's CPU accelerator (<see cref="IlgpuCpuSplitFixture"/>: its reductions in three chunks, each case sets its own).</summary>
public sealed class IlgpuCpuStagedBatchNormMerge(IlgpuCpuSplitFixture fixture) : StagedBatchNormMergeTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

/// <summary>CUDA, with 256-thread staging groups.</summary>
public sealed class CudaStagedBatchNormMerge(CudaFixture fixture) : StagedBatchNormMergeTests(fixture), IClassFixture<CudaFixture>;
