using GpuCnn.Kernels;
using GpuCnn.Models;

namespace GpuCnn.Tests.Support;

/// <summary>Awkward shapes shared by the backend and gradient tests: batch 1, odd sizes, 1×1 and 5×1 kernels, stride 2 with padding, 24 filters.</summary>
public static class Cases
{
    /// <summary>
    /// Every registered activation (from the layer registry, so a new one is tested without touching the tests),
    /// plus LeakyReLU with the slope the older tests used and with a negative slope (which must not fuse).
    /// </summary>
    public static TheoryData<string> ActivationSpecs => new([.. LayerRegistry.ActivationNames, "leakyrelu(0.1)", "leakyrelu(-0.2)"]);

    /// <summary>The same, plus "none" for operations whose activation is optional.</summary>
    public static TheoryData<string> ActivationSpecsAndNone => new(["none", .. LayerRegistry.ActivationNames, "leakyrelu(0.1)"]);

    /// <summary>A fresh activation layer for a spec such as "gelu" or "leakyrelu(0.1)".</summary>
    public static ActivationLayer Activation(string spec) => (ActivationLayer)ArchitectureSpec.Parse(spec).Single();

    public static readonly IReadOnlyDictionary<string, Conv2dGeometry> Convolutions = new Dictionary<string, Conv2dGeometry>
    {
        ["6x6 3x3"] = new(N: 1, C: 1, H: 6, W: 6, K: 1, R: 3, S: 3),
        ["batch2 stride2 pad1 odd"] = new(N: 2, C: 3, H: 7, W: 5, K: 4, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1),
        ["1x1"] = new(N: 1, C: 2, H: 5, W: 5, K: 3, R: 1, S: 1),
        ["5x1 pad 2x0"] = new(N: 2, C: 2, H: 9, W: 6, K: 2, R: 5, S: 1, PadH: 2),
        ["2x3 stride 2x1 pad 1x0"] = new(N: 1, C: 1, H: 5, W: 6, K: 2, R: 2, S: 3, StrideH: 2, StrideW: 1, PadH: 1),
        ["stride3 leaves rows unused"] = new(N: 1, C: 2, H: 8, W: 8, K: 2, R: 3, S: 3, StrideH: 3, StrideW: 3),
        ["dilation 2 pad 2"] = new(N: 2, C: 3, H: 7, W: 6, K: 4, R: 3, S: 3, PadH: 2, PadW: 2, DilationH: 2, DilationW: 2),
        ["groups 2 stride 2 pad 1"] = new(N: 2, C: 4, H: 6, W: 5, K: 6, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1, Groups: 2),
        ["depthwise dilation 2x1"] = new(N: 2, C: 3, H: 7, W: 6, K: 3, R: 3, S: 2, PadH: 1, DilationH: 2, DilationW: 1, Groups: 3),
        ["groups 2 of 1x1, 2 filters each"] = new(N: 1, C: 2, H: 4, W: 3, K: 4, R: 1, S: 1, Groups: 2),
        // Padding beyond the kernel's reach (3 > R − 1): border outputs see only zeros, and the input gradient must drop
        // the taps that land in the padding.
        ["pad 3 beyond a 3x3 kernel"] = new(N: 1, C: 2, H: 4, W: 5, K: 2, R: 3, S: 3, PadH: 3, PadW: 3),
        // Depthwise (the CPU backend's own backward route): rows long enough for its vector loops and their tails, and a stride.
        ["depthwise 3x3 pad 1, rows of 21"] = new(N: 2, C: 4, H: 5, W: 21, K: 4, R: 3, S: 3, PadH: 1, PadW: 1, Groups: 4),
        ["depthwise stride 2 pad 2 dilation 2"] = new(N: 2, C: 5, H: 9, W: 19, K: 5, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 2, PadW: 2,
            DilationH: 2, DilationW: 2, Groups: 5),
        // Depthwise planes laid out in scratch: padding beyond the kernel's reach (dy past it dropped), a 1×1 kernel with
        // padding, a plane one column wide, a 7×7 kernel at strides 3 and 1, a channel multiplier of 3.
        ["depthwise pad 3 beyond a 3x3 kernel"] = new(N: 2, C: 3, H: 4, W: 5, K: 3, R: 3, S: 3, PadH: 3, PadW: 3, Groups: 3),
        ["depthwise 1x1 pad 1"] = new(N: 1, C: 2, H: 4, W: 5, K: 2, R: 1, S: 1, PadH: 1, PadW: 1, Groups: 2),
        ["depthwise 1x3 pad 1 over a 1-wide plane"] = new(N: 2, C: 2, H: 4, W: 1, K: 2, R: 1, S: 3, PadW: 1, Groups: 2),
        ["depthwise 7x7 pad 3 stride 3x1"] = new(N: 1, C: 2, H: 9, W: 10, K: 2, R: 7, S: 7, StrideH: 3, StrideW: 1, PadH: 3, PadW: 3, Groups: 2),
        ["depthwise, 3 filters a channel, stride 2"] = new(N: 2, C: 2, H: 7, W: 11, K: 6, R: 3, S: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1,
            Groups: 2),
        // A 7×7 stride-2 stem: the CPU backend's filter gradient by filters, its dy transposed in 8 × 8 blocks with
        // tails in both directions (20 filters, 42 outputs).
        ["7x7 stride 2 stem, 20 filters"] = new(N: 2, C: 1, H: 13, W: 11, K: 20, R: 7, S: 7, StrideH: 2, StrideW: 2, PadH: 3, PadW: 3),
        ["dilation 2 with stride 2"] = new(N: 2, C: 2, H: 9, W: 8, K: 3, R: 3, S: 2, StrideH: 2, StrideW: 2, PadH: 1, DilationH: 2, DilationW: 2),
        // More than 16 filters and channels: both halves of a 32-filter tile's rows, the second one partly, in the forward
        // pass and filter gradient and in backward data (whose filters are these channels).
        ["24 filters from 20 channels"] = new(N: 1, C: 20, H: 5, W: 4, K: 24, R: 3, S: 3, PadH: 1, PadW: 1),
        // A 1×1 layer of 16 filters and few channels at a stride: the CPU backend's filter gradient by filters (a GEMM of 6
        // columns an image before).
        ["1x1 stride 2, 16 filters from 6 channels"] = new(N: 2, C: 6, H: 9, W: 7, K: 16, R: 1, S: 1, StrideH: 2, StrideW: 2),
        // A first layer of 270 output pixels: the few-taps filter gradient's three chunks of 96 (the last one 78, ending
        // inside a batch of 32, and inside an image).
        ["first layer, 3 channels, 270 pixels"] = new(N: 3, C: 3, H: 10, W: 9, K: 5, R: 3, S: 3, PadH: 1, PadW: 1),
        // 1-D signals stored as one row or one column, at stride 2: the second phase along the unit side holds no pixel of
        // the input (the CPU backend's phase-by-phase backward-data had written one there).
        ["1-D row at stride 2, 1x3 kernel"] = new(N: 2, C: 4, H: 1, W: 9, K: 3, R: 1, S: 3, StrideH: 2, StrideW: 2, PadW: 1),
        ["1-D column at stride 2, 3x1 kernel"] = new(N: 2, C: 4, H: 9, W: 1, K: 3, R: 3, S: 1, StrideH: 2, StrideW: 2, PadH: 1),
        // A stride past the padded input (one output a side), as large as an int goes: nothing may add it to another.
        ["stride 2^31 - 1 with padding 2"] = new(N: 2, C: 2, H: 5, W: 4, K: 3, R: 3, S: 3, StrideH: int.MaxValue, StrideW: int.MaxValue, PadH: 2, PadW: 2),
    };

    public static readonly IReadOnlyDictionary<string, Pool2dGeometry> Pools = new Dictionary<string, Pool2dGeometry>
    {
        ["4x4 2x2 s2"] = new(N: 1, C: 1, H: 4, W: 4, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2),
        ["2x2 s2, 6 planes of 6x8"] = new(N: 2, C: 3, H: 6, W: 8, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2), // ILGPU's thread-per-window kernels
        ["overlap 3x3 s2"] = new(N: 2, C: 2, H: 7, W: 5, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2),
        ["3x2 s1 pad1"] = new(N: 1, C: 3, H: 6, W: 5, KernelH: 3, KernelW: 2, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1),
        ["3x3 s2 pad 1, rows of 9"] = new(N: 1, C: 2, H: 7, W: 17, KernelH: 3, KernelW: 3, StrideH: 2, StrideW: 2, PadH: 1, PadW: 1), // the CPU's vectors
        ["odd 2x2 s2 drops edge"] = new(N: 1, C: 2, H: 5, W: 5, KernelH: 2, KernelW: 2, StrideH: 2, StrideW: 2),
        ["global 5x6, 9 planes"] = new(N: 3, C: 3, H: 5, W: 6, KernelH: 5, KernelW: 6, StrideH: 5, StrideW: 6),
        // Strides past the window (inputs in no window), over planes one row or one column wide, and one past the input
        // as large as an int goes (pooling's backward had wrapped it, reading before dy).
        ["1x2 s3 over one row"] = new(N: 2, C: 2, H: 1, W: 9, KernelH: 1, KernelW: 2, StrideH: 1, StrideW: 3),
        ["3x1 s4 pad 1 over one column"] = new(N: 1, C: 3, H: 11, W: 1, KernelH: 3, KernelW: 1, StrideH: 4, StrideW: 1, PadH: 1),
        ["2x2 at stride 2^31 - 1"] = new(N: 1, C: 2, H: 4, W: 4, KernelH: 2, KernelW: 2, StrideH: int.MaxValue, StrideW: int.MaxValue),
    };

    public static readonly IReadOnlyDictionary<string, Pad2dGeometry> Pads = new Dictionary<string, Pad2dGeometry>
    {
        ["1 on every side"] = new(N: 2, C: 3, H: 4, W: 5, Left: 1, Right: 1, Top: 1, Bottom: 1),
        ["one-sided, right and bottom"] = new(N: 1, C: 2, H: 5, W: 3, Left: 0, Right: 1, Top: 0, Bottom: 1), // ONNX's SAME at stride 2
        // Negative amounts crop: inputs that reach no output take a zero gradient.
        ["crop left and bottom, pad the rest"] = new(N: 2, C: 1, H: 6, W: 7, Left: -2, Right: 3, Top: 1, Bottom: -3),
        ["crop to one element"] = new(N: 1, C: 2, H: 3, W: 4, Left: -1, Right: -2, Top: -1, Bottom: -1),
        ["a plane of one element padded by 3"] = new(N: 3, C: 1, H: 1, W: 1, Left: 3, Right: 2, Top: 0, Bottom: 3),
    };

    public static TheoryData<string> PadNames => new(Pads.Keys);

    public static TheoryData<string> ConvolutionNames => new(Convolutions.Keys);

    public static TheoryData<string> PoolNames => new(Pools.Keys);
}
