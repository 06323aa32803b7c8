using GpuCnn.Kernels;
using ILGPU;
using ILGPU.Runtime;

namespace GpuCnn.Ilgpu;

/// <summary>
/// The kernels of one accelerator, each compiled on first use and then reused for the accelerator's lifetime.
/// </summary>
internal sealed class IlgpuKernelSet(Accelerator accelerator, DeviceGuard counter)
{
    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2dGeometry, Epilogue> ConvForward { get; } =
        new(accelerator, counter, ConvolutionKernels.Forward);

    public Kernel<ArrayView<float>, ArrayView<float>, Conv2dGeometry> DilatePad { get; } = new(accelerator, counter, ConvolutionKernels.DilatePad);

    public Kernel<ArrayView<float>, ArrayView<float>, Conv2dGeometry> RotateKernel { get; } = new(accelerator, counter, ConvolutionKernels.RotateKernel);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2dGeometry> FullConvolution { get; } =
        new(accelerator, counter, ConvolutionKernels.FullConvolution);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2dGeometry> ConvBackwardFilter { get; } =
        new(accelerator, counter, ConvolutionKernels.BackwardFilter);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<int>, Pool2dGeometry> MaxPoolForward { get; } =
        new(accelerator, counter, PoolingKernels.MaxForward);

    public Kernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, Pool2dGeometry> MaxPoolBackward { get; } =
        new(accelerator, counter, PoolingKernels.MaxBackward);

    public Kernel<ArrayView<float>, ArrayView<float>, Pool2dGeometry> AvgPoolForward { get; } = new(accelerator, counter, PoolingKernels.AverageForward);

    public Kernel<ArrayView<float>, ArrayView<float>, Pool2dGeometry> AvgPoolBackward { get; } = new(accelerator, counter, PoolingKernels.AverageBackward);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, ArrayView<float>, Epilogue> Gemm { get; } =
        new(accelerator, counter, GemmKernels.Naive);

    public Kernel<ArrayView<float>, ArrayView<float>, int, int> BiasAdd { get; } = new(accelerator, counter, ElementwiseKernels.BiasAdd);

    public GroupedKernel<ArrayView<float>, ArrayView<float>, int, int, int> BiasGradient { get; } = new(accelerator, counter, ElementwiseKernels.BiasGradient);

    public Kernel<ArrayView<float>, ArrayView<float>, int, float> ActivationForward { get; } =
        new(accelerator, counter, ElementwiseKernels.ActivationForward);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, float> ActivationBackward { get; } =
        new(accelerator, counter, ElementwiseKernels.ActivationBackward);

    public Kernel<ArrayView<float>, float> Fill { get; } = new(accelerator, counter, ElementwiseKernels.Fill);

    public Kernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int> SoftmaxCrossEntropyRows { get; } =
        new(accelerator, counter, LossKernels.SoftmaxCrossEntropyRows);

    public Kernel<ArrayView<float>, ArrayView<float>, int> MeanInOrder { get; } = new(accelerator, counter, LossKernels.MeanInOrder);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, SgdParams> Sgd { get; } = new(accelerator, counter, OptimizerKernels.Sgd);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, ArrayView<float>, AdamParams> Adam { get; } =
        new(accelerator, counter, OptimizerKernels.Adam);

    public Kernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, int, int, int> GatherFloatRows { get; } =
        new(accelerator, counter, DataKernels.GatherRows<float>);

    public Kernel<ArrayView<int>, ArrayView<int>, ArrayView<int>, int, int, int> GatherIntRows { get; } =
        new(accelerator, counter, DataKernels.GatherRows<int>);

    public Kernel<ArrayView<float>, ArrayView<int>, int, int> Argmax { get; } = new(accelerator, counter, DataKernels.Argmax);

    public Kernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, int, int, int> AccumulateMetrics { get; } =
        new(accelerator, counter, DataKernels.AccumulateMetrics);

    public GroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, int, ArrayView<float>, Epilogue> GemmTiled { get; } =
        new(accelerator, counter, GemmTiledKernels.Tiled);

    public Kernel<ArrayView<float>, ArrayView<float>, Conv2dGeometry, int, int> Im2Col { get; } =
        new(accelerator, counter, ConvolutionGemmKernels.Im2Col);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2dGeometry, int, int, Epilogue> ToNchwWithBias { get; } =
        new(accelerator, counter, ConvolutionGemmKernels.ToNchwWithBias);

    public Kernel<ArrayView<float>, ArrayView<float>, Conv2dGeometry, int, int> FromNchw { get; } =
        new(accelerator, counter, ConvolutionGemmKernels.FromNchw);

    public Kernel<ArrayView<float>, ArrayView<float>, Conv2dGeometry, int, int> Col2Im { get; } =
        new(accelerator, counter, ConvolutionGemmKernels.Col2Im);

    public GroupedKernel<ArrayView<float>, ArrayView<int>, ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int> SoftmaxCrossEntropyBatch { get; } =
        new(accelerator, counter, LossKernels.SoftmaxCrossEntropyBatch);

    public Kernel<ArrayView<float>, long> WriteOutOfBounds { get; } = new(accelerator, counter, DiagnosticKernels.WriteOutOfBounds);

    public Kernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, Conv2dGeometry, int, int> ConvBackwardFilterChunk { get; } =
        new(accelerator, counter, ConvolutionKernels.BackwardFilterChunk);

    public GroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, int, int, int> SumChunks { get; } =
        new(accelerator, counter, ReductionKernels.SumChunks);

    public Kernel<ArrayView<float>, ArrayView<float>, GemmShape, int, ArrayView<float>, Epilogue> GemmSumSplits { get; } =
        new(accelerator, counter, GemmTiledKernels.SumSplits);

    public GroupedKernel<ArrayView<float>, ArrayView<float>, ArrayView<float>, GemmShape, ArrayView<float>, Epilogue> GemmTiled8x8 { get; } =
        new(accelerator, counter, GemmTiled8x8Kernels.Tiled);
}
