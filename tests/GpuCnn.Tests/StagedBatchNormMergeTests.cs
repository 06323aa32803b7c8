using GpuCnn.Ilgpu;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Batch norm's merges of its chunks staged in shared memory (<see cref="IlgpuBackend.StagedBatchNormMerge"/>, off by
/// default until timed on a GPU) add the same sums in the same order as the merges from memory, so every output —
/// mean, invStd, running statistics, y, dweight, dbias, dx — must have the same bits; the classes force several
/// chunks a channel (three on ILGPU's CPU accelerator; a GPU's own count on CUDA).
/// </summary>
public abstract class StagedBatchNormMergeTests(BackendFixture fixture)
{
    [Theory]
    [InlineData(2, 3, 4, 5)] // (N, C, H, W): 40 values a channel
    [InlineData(4, 2, 40, 30)] // 4,800 values a channel, chunks of 1,600
    [InlineData(9, 37)] // (N, features)
    public void Staged_merges_give_the_same_bits_as_merges_from_memory(params int[] dims)
    {
        var backend = (IlgpuBackend)fixture.Require();
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
                $"{backend.Name} batch norm {shape}: the staged merge's {name} differs from the merge from memory's in its bits");
        }

        Dictionary<string, float[]> Run(bool staged, string statistics, string gradientSums)
        {
            bool before = backend.StagedBatchNormMerge;
            backend.StagedBatchNormMerge = staged;
            try
            {
                using var t = new BackendOpsTests.FusedBatchNormTensors(backend, data, shape);
                var kernels = backend.PlanLaunches(backend.Profile, () =>
                {
                    backend.BatchNormForward(true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
                    backend.BatchNormBackward(true, t.X, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
                }).Select(r => r.Kernel).ToList();
                Assert.Contains(statistics, kernels);
                Assert.Contains(gradientSums, kernels);
                Assert.True(kernels.Count(k => k == "ChunkStatistics") == 1 && kernels.Count(k => k == "ChunkGradientSums") == 1,
                    $"one chunked pass each way: {string.Join(", ", kernels)}");

                backend.BatchNormForward(true, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
                backend.BatchNormBackward(true, t.X, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
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

/// <summary>ILGPU's CPU accelerator, batch norm's sums in three chunks a channel (<see cref="IlgpuCpuSplitFixture"/>).</summary>
public sealed class IlgpuCpuStagedBatchNormMerge(IlgpuCpuSplitFixture fixture) : StagedBatchNormMergeTests(fixture), IClassFixture<IlgpuCpuSplitFixture>;

/// <summary>CUDA, with the chunks a GPU takes (a few groups a multiprocessor, shared among the channels).</summary>
public sealed class CudaStagedBatchNormMerge(CudaFixture fixture) : StagedBatchNormMergeTests(fixture), IClassFixture<CudaFixture>;
