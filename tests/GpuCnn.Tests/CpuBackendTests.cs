using System.Runtime.Intrinsics.X86;
using GpuCnn.Cpu;
using GpuCnn.Cpu.Fast;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// The fast CPU backend beyond the shared backend tests: every SIMD width (so the AVX-512, AVX2, 128-bit and scalar
/// micro-kernels all run here), shapes that cross every cache block (K &gt; KC, M &gt; MC, N &gt; NC) and the
/// column split across threads. (Allocation-free training: <see cref="AllocationTests"/>.)
/// </summary>
public sealed class CpuBackendTests
{
    public static TheoryData<SimdWidth> Widths => new(Enum.GetValues<SimdWidth>().Where(w => w <= Simd.Best));

    [Theory]
    [InlineData("cpu")]
    [InlineData("reference")]
    public void Host_tensors_of_4_KB_or_more_start_on_a_cache_line_and_stay_there(string name)
    {
        using var backend = Backends.Open(name);
        foreach (int[] dims in (int[][])[[1], [17], [1023], [1024], [7, 13, 5], [33, 31], [3, 1000], [64, 64, 32, 32]])
        {
            var shape = new Shape(dims);
            float[] values = TestData.Uniform(shape.Size, 4);
            using var tensor = backend.Upload<float>(shape, values);
            using var labels = backend.Upload<int>([shape.Size], [.. Enumerable.Range(0, shape.Size)]);
            var host = (HostTensor<float>)tensor;
            bool large = shape.Size * sizeof(float) >= HostTensor<float>.AlignedBytes;
            Assert.Equal(large, host.IsPinned);
            Assert.Equal(large, ((HostTensor<int>)labels).IsPinned);
            nint first = host.Address;
            if (large)
            {
                Assert.True(first % 64 == 0, $"{name} {shape}: values start {first % 64} bytes past a 64-byte line");
                Assert.True(((HostTensor<int>)labels).Address % 64 == 0, $"{name} int{labels.Shape}");
                GC.Collect(2, GCCollectionMode.Forced, blocking: true, compacting: true);
                Assert.Equal(first, host.Address);
            }

            var view = tensor.View([shape.Size]);
            Assert.Equal(host.Address, ((HostTensor<float>)view).Address);
            Assert.Equal(values, backend.DownloadArray(view));
            Assert.Equal(shape.Size * sizeof(float), host.Bytes);
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Gemm_crosses_every_block_boundary_at_every_width(SimdWidth width)
    {
        using var backend = new CpuBackend(threads: 2, width);
        foreach (var (m, n, k, ta, tb) in (ValueTuple<int, int, int, bool, bool>[])[(200, 2100, 600, false, false), (97, 131, 257, true, true), (50, 70, 300, false, true), (7, 3000, 5, false, true), (1, 1, 1, true, false)])
        {
            float[] a = TestData.Uniform(m * k, 1), b = TestData.Uniform(k * n, 2), c = TestData.Uniform(m * n, 3);
            var expected = TestData.Widen(c);
            ReferenceMath.Gemm<double>(ta, tb, m, n, k, 0.5, TestData.Widen(a), TestData.Widen(b), -2.0, expected);
            using var da = backend.Upload<float>([m * k], a);
            using var db = backend.Upload<float>([k * n], b);
            using var dc = backend.Upload<float>([m * n], c);
            backend.Gemm(ta, tb, m, n, k, 0.5f, da, db, -2f, dc);
            // Sums of up to 600 products of values in [−1, 1]: float rounding stays well below 1e-3.
            TensorAssert.Close(expected, backend.DownloadArray(dc), new Shape(m, n), 1e-3, 1e-4, $"{width} gemm {m}x{n}x{k} tA={ta} tB={tb}");
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Convolutions_match_the_reference_at_every_width(SimdWidth width)
    {
        using var backend = new CpuBackend(threads: 3, width);
        // Plus a 1×1 layer, one whose P·Q (323) spans two K blocks of the GEMM with C > 4 (the packed-im2col filter
        // route), two with planes large enough for the blocked filter gradient (K not a multiple of its 4 filters, 15
        // taps not of its 3), one of small planes with more than 4 channels (blocked forward, GEMM filter gradient), a
        // large stride-2 layer (phase planes forward, phase-by-phase backward-data), strides 2×1, an even 4×4 kernel
        // at stride 2 (phases of unequal tap counts), a 1×3 kernel at stride 2 (row phases without taps), two stride-2
        // layers without padding (their phases cut from the image itself, reads bounded by its end; the 19-wide one in
        // the shifted layout), one whose
        // blocked filter gradient sums several images at once, and the first, the small and the summed ones again with
        // a NaN pixel; and two past the blocked kernel's bounds of earlier sessions: 72 output channels (blocked forward
        // everywhere) and a padded image of 69,632 floats. The filter
        // gradient vectorised over filters (K ≥ 16) runs on the 72-channel layer, on 16 filters of a 5×5 kernel (256-bit
        // vectors under 512-bit ones) and on 20 at stride 2 (filter lanes past K), the last also with a NaN pixel.
        var byFilters = new Conv2dGeometry(N: 3, C: 5, H: 11, W: 12, K: 20, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1);
        // An unpadded-rows 5×5 layer of 11 input channels: backward-data kernel column by kernel column (ShiftedPlan,
        // one block of 8 channels and one of 3), also with a NaN pixel.
        var columnShifted = new Conv2dGeometry(N: 3, C: 11, H: 14, W: 13, K: 7, R: 5, S: 5, PadW: 1);
        // The same plan without padding: 13-wide rows of dx added 8, 4 and 1 at a time, and 20-wide ones 16 and 4.
        var columnShiftedWide = new Conv2dGeometry(N: 2, C: 5, H: 8, W: 17, K: 4, R: 3, S: 5);
        var columnShiftedWider = new Conv2dGeometry(N: 2, C: 4, H: 6, W: 24, K: 3, R: 3, S: 5);
        // Shifted copies with P·Q whole vectors at every width: a full block of 8 filters is written straight into y,
        // the last 4 through the row scratch.
        var straight = new Conv2dGeometry(N: 2, C: 3, H: 16, W: 16, K: 12, R: 3, S: 3, PadH: 1, PadW: 1);
        var large = new Conv2dGeometry(N: 2, C: 5, H: 26, W: 23, K: 10, R: 3, S: 3, PadH: 1, PadW: 1);
        var small = new Conv2dGeometry(N: 7, C: 6, H: 7, W: 6, K: 5, R: 3, S: 3, PadH: 1, PadW: 1);
        var summed = new Conv2dGeometry(N: 7, C: 6, H: 14, W: 13, K: 5, R: 3, S: 3, PadH: 1, PadW: 1); // 2–3 images a worker, summed together
        // The direct filter gradient of few channels (C ≤ 4): LeNet's first layer's shape, filters in pairs and an odd
        // last one, a 5-wide kernel in one block of five columns, 21-wide rows (a tail at every width), also with a
        // NaN pixel; and 7-wide kernels in blocks of four, the second of three columns.
        var fewChannels = new Conv2dGeometry(N: 5, C: 2, H: 12, W: 21, K: 5, R: 5, S: 5, PadH: 2, PadW: 2); // 5 images: parts sum 2
        var wideKernel = new Conv2dGeometry(N: 2, C: 2, H: 10, W: 13, K: 4, R: 2, S: 7, PadW: 3);
        // Small planes of 32 filters a block, vectorised over filters (AVX-512): 7 columns in one run of seven, an odd
        // number of runs (the last alone); 13 columns in two runs, the second of six pixels; 5 columns, one run with two
        // pixels dropped; stride 2 from 14×14 to 7×7 and from 26 columns (two vectors a padded row) to 13; 64 filters in
        // two blocks, a 5×5 kernel padded by 2.
        Conv2dGeometry[] filterVector = [
            new(N: 3, C: 5, H: 7, W: 7, K: 32, R: 3, S: 3, PadH: 1, PadW: 1),
            new(N: 2, C: 3, H: 6, W: 13, K: 64, R: 3, S: 3, PadH: 1, PadW: 1),
            new(N: 2, C: 3, H: 5, W: 5, K: 32, R: 3, S: 3, PadH: 1, PadW: 1),
            new(N: 2, C: 4, H: 14, W: 14, K: 32, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 1, C: 2, H: 9, W: 26, K: 32, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 2, C: 3, H: 7, W: 7, K: 64, R: 5, S: 5, PadH: 2, PadW: 2),
            new(N: 1, C: 4, H: 7, W: 7, K: 96, R: 3, S: 3, PadH: 1, PadW: 1)]; // batch 1: its three blocks split between the three workers
        // Strided backward-data vectorised across input channels, phase by phase (TransposedPlan): 32 channels at stride 2
        // into 7×7 phases, and into 28 rows of 26 columns (phases of 14 × 13); on AVX2 (blocks of 8) also 8 channels of
        // 13×13 (phases of 7 and 6 columns), a 4×4 kernel (2 × 2 taps a phase) and strides of 2 × 1; and rows of one
        // pixel (a 1-D signal) at stride 2, whose second row phase lies wholly outside dx (it had been written: zeros
        // over the next channel's row, and past the end of the last image).
        Conv2dGeometry[] phases = [
            new(N: 2, C: 32, H: 14, W: 14, K: 16, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 1, C: 32, H: 28, W: 26, K: 8, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 2, C: 8, H: 13, W: 13, K: 8, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 2, C: 16, H: 10, W: 10, K: 8, R: 4, S: 4, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
            new(N: 2, C: 8, H: 9, W: 7, K: 8, R: 3, S: 3, StrideH: 2, StrideW: 1, PadH: 1, PadW: 1),
            new(N: 2, C: 32, H: 1, W: 14, K: 8, R: 1, S: 3, StrideH: 2, StrideW: 2, PadW: 1)];
        bool vectors = width == SimdWidth.Vector512 ? Avx512F.VL.IsSupported : width == SimdWidth.Vector256 && Avx2.IsSupported && Fma.IsSupported;
        Assert.All(phases, g => Assert.Equal(vectors && g.C % FilterVectorConvolution.BlockFilters(width) == 0, FilterVectorConvolution.SuitsPhases(g, width)));
        // 1×1 layers of fewer than 32 channels take the filter gradient by filters (a GEMM of C columns an image before),
        // with a NaN pixel the stride skips too; from 32 channels their GEMM.
        var oneByOne = Cases.Convolutions["1x1 stride 2, 16 filters from 6 channels"];
        Assert.True(FilterGradientByFilters.Preferred(oneByOne));
        Assert.False(FilterGradientByFilters.Preferred(oneByOne with { C = 32 }));
        Assert.All(filterVector, g => Assert.Equal(
            width == SimdWidth.Vector512 ? Avx512F.VL.IsSupported : width == SimdWidth.Vector256 && Avx2.IsSupported && Fma.IsSupported,
            FilterVectorConvolution.Suits(g, width)));
        foreach (var (g, nan) in Cases.Convolutions.Values.Append(new Conv2dGeometry(N: 5, C: 3, H: 9, W: 11, K: 13, R: 1, S: 1))
                     .Append(new Conv2dGeometry(N: 2, C: 5, H: 19, W: 17, K: 3, R: 3, S: 3, PadH: 1, PadW: 1))
                     .Append(large).Append(new Conv2dGeometry(N: 1, C: 6, H: 24, W: 30, K: 5, R: 5, S: 3, PadH: 2))
                     .Append(new Conv2dGeometry(N: 2, C: 5, H: 30, W: 29, K: 6, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1))
                     .Append(small)
                     .Append(new Conv2dGeometry(N: 2, C: 4, H: 9, W: 8, K: 5, R: 2, S: 3, StrideH: 2, StrideW: 1, PadH: 1))
                     .Append(new Conv2dGeometry(N: 2, C: 5, H: 10, W: 9, K: 4, R: 4, S: 4, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1))
                     .Append(new Conv2dGeometry(N: 2, C: 4, H: 8, W: 9, K: 4, R: 1, S: 3, StrideH: 2, StrideW: 2, PadW: 1))
                     .Append(new Conv2dGeometry(N: 2, C: 3, H: 9, W: 21, K: 4, R: 3, S: 3, StrideH: 2, StrideW: 2))
                     .Append(new Conv2dGeometry(N: 2, C: 3, H: 9, W: 19, K: 4, R: 3, S: 3, StrideH: 2, StrideW: 2))
                     .Append(summed)
                     .Append(new Conv2dGeometry(N: 2, C: 6, H: 14, W: 13, K: 72, R: 3, S: 3, PadH: 1, PadW: 1))
                     .Append(new Conv2dGeometry(N: 1, C: 17, H: 62, W: 62, K: 6, R: 3, S: 3, PadH: 1, PadW: 1))
                     .Append(new Conv2dGeometry(N: 3, C: 6, H: 10, W: 9, K: 16, R: 5, S: 5, PadH: 2, PadW: 2)).Append(byFilters).Append(columnShifted)
                     .Append(straight).Append(fewChannels).Append(wideKernel).Append(columnShiftedWide).Append(columnShiftedWider)
                     .Concat(filterVector).Concat(phases)
                     .Select(g => (g, false)).Append((large, true)).Append((small, true)).Append((summed, true)).Append((byFilters, true)).Append((columnShifted, true))
                     .Append((fewChannels, true)).Append((filterVector[0], true)).Append((phases[0], true)).Append((oneByOne, true)))
        {
            float[] x = TestData.Uniform(g.InputSize, 4), w = TestData.Uniform(g.WeightSize, 5), dy = TestData.Uniform(g.OutputSize, 6);
            float[] bias = TestData.Uniform(g.K, 7);
            if (nan)
            {
                // Channel 1, row 1, last column: no output reads it through the kernel's first column, so the reference's
                // dw[·,1,·,0] stay finite; a path that multiplied it by a zero gradient would turn them into NaN.
                x[(g.H * g.W) + g.W + (g.W - 1)] = float.NaN;
            }

            var (y, dx, dw) = ConvolutionPasses.Reference(g, x, w, bias, dy);

            var (actualY, actualDx, actualDw) = ConvolutionPasses.Run(backend, g, x, w, bias, dy);
            TensorAssert.Close(y, actualY, g.OutputShape, 1e-4, 1e-4, $"{width} conv forward {g}");
            TensorAssert.Close(dx, actualDx, g.InputShape, 1e-4, 1e-4, $"{width} conv backward-data {g}");
            TensorAssert.Close(dw, actualDw, g.WeightShape, 1e-4, 1e-4, $"{width} conv backward-filter {g}");
        }
    }

    [Fact]
    public void Rows_wider_than_a_thread_stack_holds_run_forward_and_backward()
    {
        var width = Simd.Best; // the kernel is one generic body for every width
        // A 1-D signal of 600,000 samples in 2 channels: past the blocked kernel's 2¹⁸ floats, so the direct kernel runs
        // it forward, and its full convolution backward. Its four output rows had been on the stack, 16 bytes a column:
        // 9.6 MB, past Linux's 8 MB (a .NET thread elsewhere has 1.5 MB: 95,000 columns) — a stack overflow, which no
        // catch can stop, killed the process.
        var g = new Conv2dGeometry(N: 2, C: 2, H: 1, W: 600_000, K: 4, R: 1, S: 3, PadW: 1);
        Assert.True(DirectConvolution.SuitsForward(g) && !BlockedConvolution.Suits(g));
        using var backend = new CpuBackend(threads: 2, width);
        float[] x = TestData.Uniform(g.InputSize, 61), w = TestData.Uniform(g.WeightSize, 62), bias = TestData.Uniform(g.K, 63);
        float[] dy = TestData.Uniform(g.OutputSize, 64);
        var (y, dx, dw) = ConvolutionPasses.Reference(g, x, w, bias, dy);
        var (actualY, actualDx, actualDw) = ConvolutionPasses.Run(backend, g, x, w, bias, dy);
        TensorAssert.Close(y, actualY, g.OutputShape, 1e-4, 1e-4, $"{width} conv forward {g}");
        TensorAssert.Close(dx, actualDx, g.InputShape, 1e-4, 1e-4, $"{width} conv backward-data {g}");
        TensorAssert.Close(dw, actualDw, g.WeightShape, 1e-3, 1e-4, $"{width} conv backward-filter {g}"); // sums of 1.2 million products
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Images_split_by_filter_blocks_give_the_bits_of_the_whole_batch(SimdWidth width)
    {
        // Vectorised across filters, a batch smaller than the team splits each image's blocks of filters (32 on
        // AVX-512, 8 on AVX2) between workers; each output is still one worker's sum, so an image alone (its blocks
        // split three ways) must give the bits it gets inside a batch of three (a worker each, all blocks).
        var batch = new Conv2dGeometry(N: 3, C: 6, H: 7, W: 7, K: 96, R: 3, S: 3, PadH: 1, PadW: 1);
        Assert.SkipUnless(FilterVectorConvolution.Suits(batch, width), $"vectorised across filters on the AVX-512 and AVX2 paths only (this is {width})");
        using var backend = new CpuBackend(threads: 3, width);
        float[] x = TestData.Uniform(batch.InputSize, 41), w = TestData.Uniform(batch.WeightSize, 42), bias = TestData.Uniform(batch.K, 43);
        float[] dy = TestData.Uniform(batch.OutputSize, 44);
        var (y, dx, _) = ConvolutionPasses.Run(backend, batch, x, w, bias, dy);
        var one = batch with { N = 1 };
        for (int n = 0; n < batch.N; n++)
        {
            Range input = (n * one.InputSize)..((n + 1) * one.InputSize), output = (n * one.OutputSize)..((n + 1) * one.OutputSize);
            var (aloneY, aloneDx, _) = ConvolutionPasses.Run(backend, one, x[input], w, bias, dy[output]);
            TensorAssert.Identical<float>(y[output], aloneY, $"forward of image {n} alone");
            TensorAssert.Identical<float>(dx[input], aloneDx, $"backward-data of image {n} alone");
        }
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Small_planes_by_gemm_run_several_images_to_a_product_with_the_bits_of_each_image_alone(SimdWidth width)
    {
        // Layers the GEMM route takes (1×1, dilated, more than 256 filters) with planes under 256 outputs: two workers
        // put several images in one product, forward and backward-data (13 images of 25 outputs: parts of 3, the last
        // of 1). Each output is then the same sums in the same order as with the image alone, so the bits must match;
        // the padded and dilated ones take the gathers' masked path at 256 and 512 bits.
        using var backend = new CpuBackend(threads: 2, width);
        foreach (var g in (Conv2dGeometry[])[
            new(N: 13, C: 6, H: 10, W: 9, K: 13, R: 1, S: 1, StrideH: 2, StrideW: 2),
            new(N: 12, C: 5, H: 7, W: 6, K: 9, R: 1, S: 1),
            new(N: 12, C: 5, H: 5, W: 6, K: 7, R: 1, S: 1, PadH: 1, PadW: 1),
            new(N: 12, C: 4, H: 8, W: 7, K: 7, R: 3, S: 3, PadH: 2, PadW: 2, DilationH: 2, DilationW: 2),
            new(N: 9, C: 3, H: 9, W: 9, K: 300, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1)])
        {
            float[] x = TestData.Uniform(g.InputSize, 31), w = TestData.Uniform(g.WeightSize, 32), bias = TestData.Uniform(g.K, 33);
            float[] dy = TestData.Uniform(g.OutputSize, 34);
            var (expectedY, expectedDx, _) = ConvolutionPasses.Reference(g, x, w, bias, dy);
            var (y, dx, _) = ConvolutionPasses.Run(backend, g, x, w, bias, dy);
            TensorAssert.Close(expectedY, y, g.OutputShape, 1e-4, 1e-4, $"{width} conv forward {g}");
            TensorAssert.Close(expectedDx, dx, g.InputShape, 1e-4, 1e-4, $"{width} conv backward-data {g}");

            var one = g with { N = 1 };
            for (int n = 0; n < g.N; n++)
            {
                Range input = (n * one.InputSize)..((n + 1) * one.InputSize), output = (n * one.OutputSize)..((n + 1) * one.OutputSize);
                var (aloneY, aloneDx, _) = ConvolutionPasses.Run(backend, one, x[input], w, bias, dy[output]);
                Assert.True(aloneY.Select(BitConverter.SingleToInt32Bits).SequenceEqual(y[output].Select(BitConverter.SingleToInt32Bits)),
                    $"{width} conv forward {g}: image {n} alone gave other bits");
                Assert.True(aloneDx.Select(BitConverter.SingleToInt32Bits).SequenceEqual(dx[input].Select(BitConverter.SingleToInt32Bits)),
                    $"{width} conv backward-data {g}: image {n} alone gave other bits");
            }
        }
    }

    /// <summary>
    /// Batch norm, plain and with ReLU or Sigmoid fused, on inputs large enough for the CPU to split their channels
    /// across its team: images channel by channel, and features (N, 300) a vector of channels at a time in parts of
    /// whole vectors, the channels past the last whole vector one by one; and (4, 300) on one thread, more vectors than
    /// the 32 whose sums go on the stack at once. The statistics are checked too: a channel done twice would move
    /// the running ones twice.
    /// </summary>
    [Theory]
    [InlineData("none")]
    [InlineData("relu")]
    [InlineData("sigmoid")]
    public void Batch_norm_split_across_the_team_matches_the_composition(string spec)
    {
        using var backend = new CpuBackend(threads: 3, Simd.Best);
        var f = spec == "none" ? null : Cases.Activation(spec);
        foreach (var dims in (int[][])[[8, 16, 17, 16], [1024, 300], [4, 300]])
        {
            foreach (bool training in (bool[])[true, false])
            {
                var shape = new Shape(dims);
                var data = BackendOpsTests.FusedBatchNormData.Random(shape, training);
                var expected = data.Expected(f);
                using var t = new BackendOpsTests.FusedBatchNormTensors(backend, data, shape);
                if (f is null)
                {
                    backend.BatchNormForward(training, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
                    backend.BatchNormBackward(training, t.X, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
                }
                else
                {
                    f.BatchNormForward(backend, training, t.X, t.Weight, t.Bias, t.RunningMean, t.RunningVar, 0.1f, 1e-5f, t.Y, t.Mean, t.InvStd);
                    f.BatchNormBackward(backend, training, t.X, t.Y, t.Dy, t.Weight, t.Mean, t.InvStd, t.Dx, t.Dweight, t.Dbias);
                }

                string what = $"batch norm + {spec} {(training ? "training" : "evaluation")} {shape}";
                TensorAssert.Close(expected.Y, backend.DownloadArray(t.Y), shape, 1e-4, 1e-4, $"{what} y");
                t.Expect(expected, what, 1e-4, 1e-4);
                var statistics = data.ExpectedStatistics();
                var channels = new Shape(shape[1]);
                TensorAssert.Close(statistics.Mean, backend.DownloadArray(t.Mean), channels, 1e-4, 1e-4, $"{what} mean");
                TensorAssert.Close(statistics.InvStd, backend.DownloadArray(t.InvStd), channels, 1e-4, 1e-4, $"{what} invStd");
                TensorAssert.Close(statistics.RunningMean, backend.DownloadArray(t.RunningMean), channels, 1e-4, 1e-4, $"{what} running mean");
                TensorAssert.Close(statistics.RunningVar, backend.DownloadArray(t.RunningVar), channels, 1e-4, 1e-4, $"{what} running var");
            }
        }
    }

    [Fact]
    public void Pooling_windows_wider_than_a_thread_stack_holds_run()
    {
        // A window 2.1 million columns wide: its column offsets had been on the stack (8.4 MB, past Linux's 8 MB: a
        // stack overflow killed the process); eleven windows 10,000 apart.
        var g = new Pool2dGeometry(N: 1, C: 1, H: 1, W: 2_200_000, KernelH: 1, KernelW: 2_100_000, StrideH: 1, StrideW: 10_000);
        Assert.True(PoolWindows.Suits(g, Simd.Best) || Simd.Best < SimdWidth.Vector256);
        float[] x = TestData.Uniform(g.InputSize, 13);
        var (expected, expectedSwitches, average) = (new double[g.OutputSize], new int[g.OutputSize], new double[g.OutputSize]);
        ReferenceMath.MaxPool2dForward<double>(g, TestData.Widen(x), expected, expectedSwitches);
        ReferenceMath.AvgPool2dForward<double>(g, TestData.Widen(x), average);
        using var backend = new CpuBackend(threads: 2, Simd.Best);
        using var tx = backend.Upload<float>(g.InputShape, x);
        using var ty = backend.Allocate<float>(g.OutputShape);
        using var switches = backend.Allocate<int>(g.OutputShape);
        backend.MaxPool2dForward(g, tx, ty, switches);
        Assert.Equal(expectedSwitches, backend.DownloadArray(switches));
        TensorAssert.Close(expected, backend.DownloadArray(ty), g.OutputShape, 0, 0, "max pool over 2.1 million columns");
        backend.AvgPool2dForward(g, tx, ty);
        TensorAssert.Close(average, backend.DownloadArray(ty), g.OutputShape, 1e-5, 1e-4, "average pool over 2.1 million columns"); // float sums of 2.1 million
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Vectorised_2x2_max_pooling_keeps_the_reference_rules_for_ties_and_nan(SimdWidth width)
    {
        // Output rows of 21: 16 lanes (two steps of 8 with 256-bit vectors), 4 more (one 128-bit step), a scalar tail;
        // values in eighths so ties are common; two NaNs in output 17's window (the last one's index wins).
        var g = new Pool2dGeometry(N: 2, C: 3, H: 6, W: 42, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2);
        float[] x = TestData.Uniform(g.InputSize, 9).Select(v => MathF.Round(v * 4) / 8).ToArray();
        x[5] = float.NaN;
        x[42 + 17] = float.NaN;
        x[35] = float.NaN;
        x[42 + 34] = float.NaN;
        x[100] = float.NegativeInfinity;
        var expected = new double[g.OutputSize];
        var expectedSwitches = new int[g.OutputSize];
        ReferenceMath.MaxPool2dForward<double>(g, TestData.Widen(x), expected, expectedSwitches);
        using var backend = new CpuBackend(threads: 2, width);
        using var tx = backend.Upload<float>(g.InputShape, x);
        using var ty = backend.Allocate<float>(g.OutputShape);
        using var switches = backend.Allocate<int>(g.OutputShape);
        backend.MaxPool2dForward(g, tx, ty, switches);
        Assert.Equal(expectedSwitches, backend.DownloadArray(switches));
        TensorAssert.Close(expected, backend.DownloadArray(ty), g.OutputShape, 0, 0, $"{width} 2x2 max pool values");
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Vectorised_2x2_average_pooling_keeps_the_generic_loops_bits(SimdWidth width)
    {
        // Output rows of 21 (16 lanes and a last vector ending at the row's end), 9 (an odd W: column 18 in no window), 5
        // and 3 (one at a time below four), over an odd H (its last row in no window); NaN, ±∞ and a window of −0s.
        foreach (var (h, w) in ((int, int)[])[(7, 42), (4, 19), (6, 10), (5, 6)])
        {
            var g = new Pool2dGeometry(N: 2, C: 3, H: h, W: w, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2);
            float[] x = TestData.Uniform(g.InputSize, 11), dy = TestData.Uniform(g.OutputSize, 12);
            (x[3], x[w + 7], x[(2 * w) + 1]) = (float.NaN, float.PositiveInfinity, float.NegativeInfinity);
            (x[(2 * w) + 4], x[(2 * w) + 5], x[(3 * w) + 4], x[(3 * w) + 5]) = (-0f, -0f, -0f, -0f);
            (dy[1], dy[2], dy[g.Q + 1]) = (-0f, float.NaN, float.PositiveInfinity);
            var expectedY = new float[g.OutputSize];
            var expectedDx = new float[g.InputSize]; // inputs in no window stay 0
            for (int plane = 0; plane < g.N * g.C; plane++)
            {
                for (int p = 0; p < g.P; p++)
                {
                    for (int q = 0; q < g.Q; q++)
                    {
                        int first = (plane * h * w) + (2 * p * w) + (2 * q), output = (plane * g.P * g.Q) + (p * g.Q) + q;
                        // the generic loop: a sum from 0 in row-major window order, times ¼; each input 0 + its one share
                        expectedY[output] = ((((0f + x[first]) + x[first + 1]) + x[first + w]) + x[first + w + 1]) * 0.25f;
                        float share = 0f + (dy[output] * 0.25f);
                        (expectedDx[first], expectedDx[first + 1], expectedDx[first + w], expectedDx[first + w + 1]) = (share, share, share, share);
                    }
                }
            }

            using var backend = new CpuBackend(threads: 2, width);
            using var tx = backend.Upload<float>(g.InputShape, x);
            using var ty = backend.Allocate<float>(g.OutputShape);
            using var tdy = backend.Upload<float>(g.OutputShape, dy);
            using var tdx = backend.Upload<float>(g.InputShape, [.. Enumerable.Repeat(float.NaN, g.InputSize)]); // every input written
            backend.AvgPool2dForward(g, tx, ty);
            backend.AvgPool2dBackward(g, tdy, tdx);
            Assert.Equal(expectedY.Select(BitConverter.SingleToInt32Bits), backend.DownloadArray(ty).Select(BitConverter.SingleToInt32Bits));
            Assert.Equal(expectedDx.Select(BitConverter.SingleToInt32Bits), backend.DownloadArray(tdx).Select(BitConverter.SingleToInt32Bits));
        }
    }

    [Fact]
    public void Depthwise_convolution_gives_the_same_bits_on_any_thread_count()
    {
        // Big enough to split across the team (planes for the forward and backward data, channels for the filter
        // gradient); stride 2 on the columns, so the forward reads two column phases.
        var g = new Conv2dGeometry(N: 4, C: 8, H: 16, W: 19, K: 8, R: 3, S: 3, StrideH: 1, StrideW: 2, PadH: 1, PadW: 1, Groups: 8);
        float[] x = TestData.Uniform(g.InputSize, 31), w = TestData.Uniform(g.WeightSize, 32), b = TestData.Uniform(g.K, 33);
        float[] dy = TestData.Uniform(g.OutputSize, 34);
        int[][]? expected = null;
        foreach (int threads in (int[])[1, 2, 3])
        {
            using var backend = new CpuBackend(threads, Simd.Best);
            var (y, dx, dw) = ConvolutionPasses.Run(backend, g, x, w, b, dy);
            int[][] bits = [.. new[] { y, dx, dw }.Select(values => values.Select(BitConverter.SingleToInt32Bits).ToArray())];
            expected ??= bits;
            for (int i = 0; i < bits.Length; i++)
            {
                Assert.True(expected[i].SequenceEqual(bits[i]), $"{threads} threads: {(i == 0 ? "y" : i == 1 ? "dx" : "dw")} differs from one thread's");
            }
        }
    }

    [Theory]
    [InlineData(3, 3, 2, 2, 1, 1)] // ResNet's stem pooling
    [InlineData(3, 3, 1, 1, 1, 1)]
    [InlineData(2, 2, 1, 1, 0, 0)] // overlapping windows, no padding
    [InlineData(3, 2, 3, 2, 1, 0)] // every stride and padding different across the axes
    [InlineData(5, 5, 2, 3, 2, 2)]
    public void Vectorised_pooling_over_any_window_keeps_the_generic_loops_bits(int kh, int kw, int sh, int sw, int ph, int pw)
    {
        Assert.SkipUnless(Simd.Best >= SimdWidth.Vector256, $"the window route needs 256-bit vectors; this machine's widest is {Simd.Best}");
        // The generic loops run on a backend without 256-bit vectors; rows of 8 to 37 outputs (the last vector ending
        // at the row's end); values in eighths (ties), NaN, ±∞, a row of −∞ at the top border where padding must not win;
        // average pooling's gradient too (gathered at stride 1), from a dy with a NaN and a −0, every dx written.
        foreach (int w in (int[])[17, 40, 75])
        {
            var g = new Pool2dGeometry(N: 2, C: 3, H: 11, W: w, KernelH: kh, KernelW: kw, StrideH: sh, StrideW: sw, PadH: ph, PadW: pw);
            float[] x = TestData.Uniform(g.InputSize, 13).Select(v => MathF.Round(v * 4) / 8).ToArray();
            (x[4], x[w + 9], x[(3 * w) + 5], x[(3 * w) + 6]) = (float.NaN, float.PositiveInfinity, float.NaN, float.NaN);
            Array.Fill(x, float.NegativeInfinity, 11 * w, w); // plane 1's first row
            x[^1] = float.NegativeInfinity;
            float[] dy = TestData.Uniform(g.OutputSize, 14);
            (dy[2], dy[9]) = (float.NaN, -0f);
            float[]? expectedY = null, expectedAverage = null, expectedDx = null;
            int[]? expectedSwitches = null;
            foreach (var width in (SimdWidth[])[SimdWidth.Vector128, SimdWidth.Vector256, SimdWidth.Vector512])
            {
                if (width > Simd.Best)
                {
                    continue;
                }

                using var backend = new CpuBackend(threads: 2, width);
                using var tx = backend.Upload<float>(g.InputShape, x);
                using var ty = backend.Allocate<float>(g.OutputShape);
                using var average = backend.Allocate<float>(g.OutputShape);
                using var switches = backend.Allocate<int>(g.OutputShape);
                using var tdy = backend.Upload<float>(g.OutputShape, dy);
                using var tdx = backend.Upload<float>(g.InputShape, [.. Enumerable.Repeat(float.NaN, g.InputSize)]);
                backend.MaxPool2dForward(g, tx, ty, switches);
                backend.AvgPool2dForward(g, tx, average);
                backend.AvgPool2dBackward(g, tdy, tdx);
                int[] actualSwitches = backend.DownloadArray(switches);
                int[] actualY = [.. backend.DownloadArray(ty).Select(BitConverter.SingleToInt32Bits)];
                int[] actualAverage = [.. backend.DownloadArray(average).Select(BitConverter.SingleToInt32Bits)];
                if (expectedSwitches is null)
                {
                    (expectedSwitches, expectedY, expectedAverage) = (actualSwitches, backend.DownloadArray(ty), backend.DownloadArray(average));
                    expectedDx = backend.DownloadArray(tdx);
                    continue;
                }

                Assert.Equal(expectedDx!.Select(BitConverter.SingleToInt32Bits), backend.DownloadArray(tdx).Select(BitConverter.SingleToInt32Bits));
                Assert.Equal(expectedSwitches, actualSwitches);
                Assert.Equal(expectedY!.Select(BitConverter.SingleToInt32Bits), actualY);
                Assert.Equal(expectedAverage!.Select(BitConverter.SingleToInt32Bits), actualAverage);
            }
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public void Global_average_pooling_four_planes_at_a_time_keeps_the_plane_by_plane_bits(int threads)
    {
        // 42 planes of 28×28 (enough values to split): parts of 10–11 planes on one thread, 5–6 on two, so groups of
        // four start off multiples of four and every part ends in a remainder.
        const int Planes = 42, Area = 28 * 28;
        var g = new Pool2dGeometry(N: 2, C: Planes / 2, H: 28, W: 28, KernelH: 28, KernelW: 28, StrideH: 28, StrideW: 28) { PlaneMean = true };
        float[] x = TestData.Uniform(g.InputSize, 21), dy = TestData.Uniform(g.OutputSize, 22);
        x[(2 * Area) + 3] = float.NaN;
        x[(9 * Area) + Area - 1] = float.PositiveInfinity;
        dy[2] = -0f;
        dy[9] = float.NaN;
        const float Divisor = Area; // divided by, as PyTorch does
        var expectedY = new float[g.OutputSize];
        var expectedDx = new float[g.InputSize];
        for (int plane = 0; plane < Planes; plane++)
        {
            double sum = 0;
            for (int i = 0; i < Area; i++)
            {
                sum += x[(plane * Area) + i]; // the plane's values in row-major order, one add at a time in double
            }

            expectedY[plane] = (float)sum / Divisor;
            Array.Fill(expectedDx, 0f + (dy[plane] / Divisor), plane * Area, Area); // 0 + share: dy = −0 gives +0
        }

        using var backend = new CpuBackend(threads, Simd.Best);
        using var tx = backend.Upload<float>(g.InputShape, x);
        using var ty = backend.Allocate<float>(g.OutputShape);
        using var tdy = backend.Upload<float>(g.OutputShape, dy);
        using var tdx = backend.Allocate<float>(g.InputShape);
        backend.AvgPool2dForward(g, tx, ty);
        backend.AvgPool2dBackward(g, tdy, tdx);
        Assert.Equal(expectedY.Select(BitConverter.SingleToInt32Bits), backend.DownloadArray(ty).Select(BitConverter.SingleToInt32Bits));
        Assert.Equal(expectedDx.Select(BitConverter.SingleToInt32Bits), backend.DownloadArray(tdx).Select(BitConverter.SingleToInt32Bits));
    }

    [Theory]
    [MemberData(nameof(Widths))]
    public void Nan_and_infinity_in_a_convolution_follow_pytorch_at_every_width(SimdWidth width)
    {
        // The direct filter gradient reads whole vectors past the end of a row; a NaN or ∞ there must not leak in.
        var t = IO.Safetensors.Read(Path.Combine(AppContext.BaseDirectory, "Fixtures", "torch", "nonfinite", "conv2d.safetensors")).Tensors;
        var g = NonFiniteParityTests.ConvolutionGeometry(t, NonFiniteParityTests.CaseInfo("conv2d"));
        using var backend = new CpuBackend(threads: 2, width);
        using var x = backend.Upload(t["x"]);
        using var w = backend.Upload(t["w"]);
        using var b = backend.Upload(t["b"]);
        using var dy = backend.Upload(t["dy"]);
        using var y = backend.Allocate<float>(g.OutputShape);
        using var dx = backend.Allocate<float>(g.InputShape);
        using var dw = backend.Allocate<float>(g.WeightShape);
        using var db = backend.Allocate<float>([g.K]);
        backend.Conv2dForward(g, x, w, b, y);
        backend.Conv2dBackwardData(g, dy, w, dx);
        backend.Conv2dBackwardFilter(g, x, dy, dw, db);
        TensorAssert.Close(t["y"].Data, backend.DownloadArray(y), t["y"].Shape, NonFiniteParityTests.Atol, NonFiniteParityTests.Rtol, $"{width} y");
        TensorAssert.Close(t["dx"].Data, backend.DownloadArray(dx), t["dx"].Shape, NonFiniteParityTests.Atol, NonFiniteParityTests.Rtol, $"{width} dx");
        TensorAssert.Close(t["dw"].Data, backend.DownloadArray(dw), t["dw"].Shape, NonFiniteParityTests.Atol, NonFiniteParityTests.Rtol, $"{width} dw");
        TensorAssert.Close(t["db"].Data, backend.DownloadArray(db), t["db"].Shape, NonFiniteParityTests.Atol, NonFiniteParityTests.Rtol, $"{width} db");
    }

    [Fact]
    public void Large_convolution_backward_matches_the_reference()
    {
        // Enough images and channels that every worker takes several images and the GEMMs span several blocks.
        var g = new Conv2dGeometry(N: 7, C: 20, H: 12, W: 10, K: 24, R: 3, S: 3, PadH: 1, PadW: 1);
        using var backend = new CpuBackend();
        float[] x = TestData.Uniform(g.InputSize, 7), dy = TestData.Uniform(g.OutputSize, 8);
        var dw = new double[g.WeightSize];
        ReferenceMath.Conv2dBackwardFilter<double>(g, TestData.Widen(x), TestData.Widen(dy), dw, []);
        using var tx = backend.Upload<float>(g.InputShape, x);
        using var tdy = backend.Upload<float>(g.OutputShape, dy);
        using var tdw = backend.Allocate<float>(g.WeightShape);
        backend.Conv2dBackwardFilter(g, tx, tdy, tdw, null);
        TensorAssert.Close(dw, backend.DownloadArray(tdw), g.WeightShape, 1e-3, 1e-4, "large backward-filter");
    }
}
