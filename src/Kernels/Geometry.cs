namespace GpuCnn;

/// <summary>
/// The shape of one 2-D convolution in PyTorch's conventions: input x (N, C, H, W), weights (K, C/G, R, S) for
/// G = <see cref="Groups"/>, output y (N, K, P, Q) with P = ⌊(H + 2·PadH − DilationH·(R − 1) − 1) / StrideH⌋ + 1
/// and Q likewise. Kernel taps are DilationH rows (DilationW columns) apart; output channel k sees only the input
/// channels of its group, k / (K/G), i.e. channels [g·C/G, (g + 1)·C/G).
/// </summary>
/// <remarks>
/// A plain value shared by the reference, the ILGPU kernels and the layers; it holds no ILGPU type so the
/// kernels can take it as a parameter directly. Check it with <see cref="Validate"/> before use.
/// </remarks>
public readonly record struct Conv2dGeometry(
    int N, int C, int H, int W,
    int K, int R, int S,
    int StrideH = 1, int StrideW = 1,
    int PadH = 0, int PadW = 0,
    int DilationH = 1, int DilationW = 1,
    int Groups = 1)
{
    /// <summary>The rows the dilated kernel spans, DilationH·(R − 1) + 1.</summary>
    public int ExtentH => DilationH * (R - 1) + 1;

    /// <summary>The columns the dilated kernel spans, DilationW·(S − 1) + 1.</summary>
    public int ExtentW => DilationW * (S - 1) + 1;

    /// <summary>Output height P = ⌊(H + 2·PadH − ExtentH) / StrideH⌋ + 1.</summary>
    public int P => (H + 2 * PadH - ExtentH) / StrideH + 1;

    /// <summary>Output width Q = ⌊(W + 2·PadW − ExtentW) / StrideW⌋ + 1.</summary>
    public int Q => (W + 2 * PadW - ExtentW) / StrideW + 1;

    /// <summary>Input channels per group, C/G (each weight's second dimension).</summary>
    public int GroupChannels => C / Groups;

    /// <summary>Output channels per group, K/G.</summary>
    public int GroupFilters => K / Groups;

    /// <summary>Whether the convolution is ungrouped and undilated (what the GEMM and tiled kernels handle).</summary>
    public bool IsPlain => DilationH == 1 && DilationW == 1 && Groups == 1;

    /// <summary>Input element count N·C·H·W.</summary>
    public int InputSize => N * C * H * W;

    /// <summary>Weight element count K·(C/G)·R·S.</summary>
    public int WeightSize => K * GroupChannels * R * S;

    /// <summary>Output element count N·K·P·Q.</summary>
    public int OutputSize => N * K * P * Q;

    /// <summary>Input shape (N, C, H, W).</summary>
    public int[] InputShape => [N, C, H, W];

    /// <summary>Weight shape (K, C/G, R, S).</summary>
    public int[] WeightShape => [K, GroupChannels, R, S];

    /// <summary>Output shape (N, K, P, Q).</summary>
    public int[] OutputShape => [N, K, P, Q];

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="operation"/> and the bad field.</summary>
    public void Validate(string operation)
    {
        GeometryChecks.Positive(operation, "N", N);
        GeometryChecks.Positive(operation, "C", C);
        GeometryChecks.Positive(operation, "H", H);
        GeometryChecks.Positive(operation, "W", W);
        GeometryChecks.Positive(operation, "K", K);
        GeometryChecks.Positive(operation, "R", R);
        GeometryChecks.Positive(operation, "S", S);
        GeometryChecks.Positive(operation, "stride height", StrideH);
        GeometryChecks.Positive(operation, "stride width", StrideW);
        GeometryChecks.NonNegative(operation, "padding height", PadH);
        GeometryChecks.NonNegative(operation, "padding width", PadW);
        GeometryChecks.Positive(operation, "dilation height", DilationH);
        GeometryChecks.Positive(operation, "dilation width", DilationW);
        GeometryChecks.Positive(operation, "groups", Groups);
        if (C % Groups != 0 || K % Groups != 0)
        {
            throw new ArgumentException(
                $"{operation}: groups {Groups} must divide both the {C} input channels and the {K} output channels.");
        }

        if (DilationH == 1 && DilationW == 1)
        {
            GeometryChecks.WindowFits(operation, "kernel", R, S, H, W, PadH, PadW);
        }
        else if ((long)DilationH * (R - 1) + 1 > H + 2L * PadH || (long)DilationW * (S - 1) + 1 > W + 2L * PadW)
        {
            throw new ArgumentException(
                $"{operation}: kernel {R}x{S} at dilation {DilationH}x{DilationW} spans {(long)DilationH * (R - 1) + 1}x{(long)DilationW * (S - 1) + 1}, " +
                $"which is larger than the padded input {H + 2L * PadH}x{W + 2L * PadW} (input {H}x{W}, padding {PadH}x{PadW}).");
        }
        GeometryChecks.FitsInt(operation, "input", GeometryChecks.Product(N, C, H, W));
        GeometryChecks.PaddedFits(operation, C, H, W, PadH, PadW);
        GeometryChecks.FitsInt(operation, "weights", GeometryChecks.Product(K, C / Groups, R, S));
        GeometryChecks.FitsInt(operation, "output", GeometryChecks.Product(N, K, P, Q));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"x ({N},{C},{H},{W}), w ({K},{C / Math.Max(1, Groups)},{R},{S}), stride {StrideH}x{StrideW}, pad {PadH}x{PadW}" +
        (DilationH == 1 && DilationW == 1 ? "" : $", dilation {DilationH}x{DilationW}") + (Groups == 1 ? "" : $", groups {Groups}");
}

/// <summary>
/// The shape of one 2-D pooling: input x (N, C, H, W), a KernelH×KernelW window moved by the stride over the
/// input padded by PadH/PadW on each side, output y (N, C, P, Q) with P = ⌊(H + 2·PadH − KernelH) / StrideH⌋ + 1, or
/// with <see cref="CeilMode"/> ⌈…⌉ + 1 less any last window that would start past the input and its near padding
/// (PyTorch's ceil_mode): that last window runs off the far edge and is cut there. Max pooling never takes a padding
/// position (PyTorch's −∞ padding); average pooling counts padding as zeros and divides by the window's part inside the
/// padded input (<see cref="WindowArea"/>: the whole window but where ceil mode cuts it, as PyTorch's count_include_pad).
/// </summary>
public readonly record struct Pool2dGeometry(
    int N, int C, int H, int W,
    int KernelH, int KernelW,
    int StrideH, int StrideW,
    int PadH = 0, int PadW = 0)
{
    /// <summary>Output height P.</summary>
    public int P => OutputExtent(H, PadH, KernelH, StrideH, _ceilMode);

    /// <summary>Output width Q.</summary>
    public int Q => OutputExtent(W, PadW, KernelW, StrideW, _ceilMode);

    /// <summary>
    /// PyTorch's ceil_mode: the output counts a last, partial window wherever the stride leaves input over (a 3×3
    /// window at stride 2 over 6 rows: 3 outputs, not 2), so no input is dropped.
    /// </summary>
    public bool CeilMode { get => _ceilMode != 0; init => _ceilMode = value ? 1 : 0; }

    private readonly int _ceilMode; // an int: ILGPU takes no bool in a kernel's arguments

    /// <summary>
    /// Whether average pooling counts the padding in its divisor (PyTorch's count_include_pad, true by default); without
    /// it a window is divided by its part inside the input alone. Max pooling never takes padding either way.
    /// </summary>
    public bool CountIncludePad { get => _excludePad == 0; init => _excludePad = value ? 0 : 1; }

    private readonly int _excludePad; // 0 by default: a record struct's default counts the padding, as PyTorch does

    /// <summary>Whether every average-pooling window has the divisor KernelH·KernelW (see <see cref="WindowArea"/>).</summary>
    public bool UniformWindowArea => !WindowsOverhang && (CountIncludePad || (PadH == 0 && PadW == 0));

    /// <summary>Whether ceil mode's last window (a row or a column of them) runs past the padded input.</summary>
    public bool WindowsOverhang =>
        (long)(P - 1) * StrideH + KernelH > H + (2L * PadH) || (long)(Q - 1) * StrideW + KernelW > W + (2L * PadW);

    /// <summary>
    /// The divisor of average pooling's window (p, q): its rows and columns inside the padded input, KernelH·KernelW
    /// unless ceil mode's last window runs past it (PyTorch's count_include_pad divisor); without
    /// <see cref="CountIncludePad"/>, its rows and columns inside the input alone.
    /// </summary>
    public int WindowArea(int p, int q)
    {
        int h0 = (p * StrideH) - PadH, w0 = (q * StrideW) - PadW;
        // (h0 + KernelH would wrap for windows near int's range; h0 < H + PadH always, so these cannot.)
        if (_excludePad != 0)
        {
            // Every window holds an input element (h0 < H), so both differences are positive.
            return (Math.Min(KernelH, H - h0) - Math.Max(0, -h0)) * (Math.Min(KernelW, W - w0) - Math.Max(0, -w0));
        }

        int rows = Math.Min(KernelH, H + PadH - h0), columns = Math.Min(KernelW, W + PadW - w0);
        return rows * columns;
    }

    private static int OutputExtent(int size, int pad, int kernel, int stride, int ceilMode)
    {
        int span = size + (2 * pad) - kernel;
        if (ceilMode == 0 || span < 0) // (a window past the padded input: Validate refuses it, P says 1 meanwhile)
        {
            return (span / stride) + 1;
        }

        // ⌈span / stride⌉ without span + stride − 1, which a huge stride wraps; then PyTorch's rule: the last window
        // must start inside the input or its near padding.
        int outputs = (span / stride) + (span % stride != 0 ? 1 : 0) + 1;
        return (long)(outputs - 1) * stride >= size + pad ? outputs - 1 : outputs;
    }

    /// <summary>Input element count N·C·H·W.</summary>
    public int InputSize => N * C * H * W;

    /// <summary>Output element count N·C·P·Q.</summary>
    public int OutputSize => N * C * P * Q;

    /// <summary>Input shape (N, C, H, W).</summary>
    public int[] InputShape => [N, C, H, W];

    /// <summary>Output shape (N, C, P, Q).</summary>
    public int[] OutputShape => [N, C, P, Q];

    /// <summary>
    /// Set by global pooling (PyTorch's AdaptiveAvgPool2d(1), whose window is the whole unpadded plane): average
    /// pooling then takes each plane's mean from a sum in double, as PyTorch's mean sums far more exactly than one float
    /// add at a time (2.5e-6 relative on a 56×56 plane against 1e-7). An average pool whose window merely covers the
    /// plane adds in float, as PyTorch's AvgPool2d does.
    /// </summary>
    public bool PlaneMean { get => _planeMean != 0; init => _planeMean = value ? 1 : 0; }

    private readonly int _planeMean; // an int: ILGPU takes no bool in a kernel's arguments (not blittable)

    /// <summary>Whether this is global pooling's geometry: <see cref="PlaneMean"/> over a window that is the whole unpadded plane.</summary>
    public bool IsGlobal => PlaneMean && KernelH == H && KernelW == W && PadH == 0 && PadW == 0;

    /// <summary>Throws <see cref="ArgumentException"/> naming <paramref name="operation"/> and the bad field.</summary>
    public void Validate(string operation)
    {
        GeometryChecks.Positive(operation, "N", N);
        GeometryChecks.Positive(operation, "C", C);
        GeometryChecks.Positive(operation, "H", H);
        GeometryChecks.Positive(operation, "W", W);
        GeometryChecks.Positive(operation, "kernel height", KernelH);
        GeometryChecks.Positive(operation, "kernel width", KernelW);
        GeometryChecks.Positive(operation, "stride height", StrideH);
        GeometryChecks.Positive(operation, "stride width", StrideW);
        GeometryChecks.NonNegative(operation, "padding height", PadH);
        GeometryChecks.NonNegative(operation, "padding width", PadW);
        // PyTorch's rule: a pad larger than half the window would create windows that see only padding.
        if (2L * PadH > KernelH || 2L * PadW > KernelW)
        {
            throw new ArgumentException(
                $"{operation}: padding {PadH}x{PadW} must be at most half the window {KernelH}x{KernelW}.");
        }

        GeometryChecks.WindowFits(operation, "window", KernelH, KernelW, H, W, PadH, PadW);
        GeometryChecks.FitsInt(operation, "input", GeometryChecks.Product(N, C, H, W));
        GeometryChecks.PaddedFits(operation, C, H, W, PadH, PadW);
        // The output can outgrow the input (a 2×2 window at stride 1 and padding 1 makes 2×2 of 1×1).
        GeometryChecks.FitsInt(operation, "output", GeometryChecks.Product(N, C, P, Q));
    }

    /// <inheritdoc/>
    public override string ToString() =>
        $"x ({N},{C},{H},{W}), window {KernelH}x{KernelW}, stride {StrideH}x{StrideW}, pad {PadH}x{PadW}" + (CeilMode ? ", ceil mode" : "") +
        (CountIncludePad ? "" : ", padding not counted");
}

internal static class GeometryChecks
{
    /// <summary>
    /// The most elements one tensor or workspace holds: 2³¹ − 1 less 4,096, because the kernels run their loop counters
    /// in int and step them up to 4,095 past a tensor's end (four groups of 1,024, less one) before the bound test (a tensor within that
    /// of 2³¹ would wrap them negative on a GPU large enough to hold it), and ILGPU rounds a launch up to whole groups in
    /// int. .NET's own arrays stop at 2,147,483,591 elements, so a host tensor loses 4,040 at most.
    /// </summary>
    public const int MaximumElements = int.MaxValue - 4096;

    public static void Positive(string operation, string name, int value)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{operation}: {name} must be positive, got {value}.");
        }
    }

    public static void NonNegative(string operation, string name, int value)
    {
        if (value < 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{operation}: {name} must not be negative, got {value}.");
        }
    }

    /// <summary>
    /// One zero-padded image, which the kernels index and the CPU backend lays out plane by plane or image by image in
    /// int arithmetic, holds fewer than 2³¹ elements: checked in long, before anything computes H + 2·PadH, which a
    /// huge padding would wrap.
    /// </summary>
    public static void PaddedFits(string operation, int c, int h, int w, int padH, int padW)
    {
        long paddedH = h + 2L * padH, paddedW = w + 2L * padW;
        if (paddedH > MaximumElements || paddedW > MaximumElements || c * paddedH > MaximumElements / paddedW)
        {
            throw new ArgumentException(
                $"{operation}: padding {padH}x{padW} makes one padded image ({c},{paddedH},{paddedW}) larger than {MaximumElements} elements.");
        }
    }

    public static void WindowFits(string operation, string what, int kh, int kw, int h, int w, int padH, int padW)
    {
        if (kh > h + 2L * padH || kw > w + 2L * padW)
        {
            throw new ArgumentException(
                $"{operation}: {what} {kh}x{kw} is larger than the padded input {h + 2L * padH}x{w + 2L * padW} " +
                $"(input {h}x{w}, padding {padH}x{padW}).", what);
        }
    }

    public static void FitsInt(string operation, string what, long count)
    {
        if (count > MaximumElements)
        {
            string held = count == long.MaxValue ? $"at least {count}" : $"{count}";
            throw new ArgumentException($"{operation}: the {what} would hold {held} elements, more than {MaximumElements}.", what);
        }
    }

    /// <summary>
    /// A scratch buffer's element count, computed in long by the caller: one past int's range, which the kernels' int
    /// indices (and the CPU backend's int lengths) would wrap, is refused naming the operation; otherwise the count.
    /// </summary>
    public static int Elements(string operation, string what, long count)
    {
        FitsInt(operation, what, count);
        return (int)count;
    }

    /// <summary>The product of positive sizes, or long.MaxValue where it would not fit a long (four ints can pass 2⁶³).</summary>
    public static long Product(params ReadOnlySpan<int> sizes)
    {
        long product = 1;
        foreach (int size in sizes)
        {
            if (size > 0 && product > long.MaxValue / size)
            {
                return long.MaxValue;
            }

            product *= size;
        }

        return product;
    }
}
