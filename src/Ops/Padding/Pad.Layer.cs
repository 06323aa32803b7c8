using System.Globalization;
using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>
/// PyTorch's ConstantPad2d (ZeroPad2d when the value is 0): each (C, H, W) sample surrounded by <see cref="Value"/>,
/// <see cref="Left"/> columns before and <see cref="Right"/> after, <see cref="Top"/> rows above and
/// <see cref="Bottom"/> below; a negative amount crops that side instead. Its gradient is dy's part over the input.
/// Spec: <c>pad(P)</c> (every side) or <c>pad(LEFT,RIGHT,TOP,BOTTOM)</c>, PyTorch's order, with <c>value=V</c> for a
/// value other than 0. No parameters; as a module of a PyTorch nn.Sequential it takes an index as any layer.
/// </summary>
public sealed class ConstantPad2d : Layer
{
    private int _batch;

    /// <summary>A padding of <paramref name="left"/>, <paramref name="right"/>, <paramref name="top"/> and <paramref name="bottom"/> (negative: a crop) with <paramref name="value"/>.</summary>
    public ConstantPad2d(int left, int right, int top, int bottom, float value = 0f)
    {
        if (!float.IsFinite(value))
        {
            throw new SpecException($"pad: the value {value.ToString("R", CultureInfo.InvariantCulture)} is not a finite number.");
        }

        (Left, Right, Top, Bottom, Value) = (left, right, top, bottom, value);
    }

    /// <summary>The same padding on every side, as PyTorch's ZeroPad2d(p).</summary>
    public ConstantPad2d(int padding, float value = 0f)
        : this(padding, padding, padding, padding, value)
    {
    }

    /// <summary>The layer for <c>pad(P[,value=V])</c> or <c>pad(LEFT,RIGHT,TOP,BOTTOM[,value=V])</c>.</summary>
    public static ConstantPad2d Parse(LayerArguments args)
    {
        ArgumentNullException.ThrowIfNull(args);
        float value = args.NamedFloat("value", 0f);
        return args.PositionalCount switch
        {
            1 => new ConstantPad2d(args.SignedInt(0, "padding"), value),
            4 => new ConstantPad2d(args.SignedInt(0, "left padding"), args.SignedInt(1, "right padding"), args.SignedInt(2, "top padding"),
                args.SignedInt(3, "bottom padding"), value),
            int count => throw new SpecException($"pad takes one amount for every side or four (left, right, top, bottom), got {count}."),
        };
    }

    /// <summary>Columns added before each row (negative: removed).</summary>
    public int Left { get; }

    /// <summary>Columns added after each row (negative: removed).</summary>
    public int Right { get; }

    /// <summary>Rows added above (negative: removed).</summary>
    public int Top { get; }

    /// <summary>Rows added below (negative: removed).</summary>
    public int Bottom { get; }

    /// <summary>The value of the added elements (0: ZeroPad2d).</summary>
    public float Value { get; }

    /// <inheritdoc/>
    public override string Spec
    {
        get
        {
            // Invariant digits and signs: a culture's own minus (U+2212 in Swedish) would not read back.
            int[] amounts = Left == Right && Right == Top && Top == Bottom ? [Left] : [Left, Right, Top, Bottom];
            string value = Value == 0f && !float.IsNegative(Value) ? "" : ",value=" + Value.ToString("R", CultureInfo.InvariantCulture);
            return $"pad({string.Join(",", amounts.Select(a => a.ToString(CultureInfo.InvariantCulture)))}{value})";
        }
    }

    /// <inheritdoc/>
    protected override Shape InferOutputShape(Shape input)
    {
        if (input.Rank != 3)
        {
            throw new ArgumentException($"needs a (C,H,W) input, got {input}");
        }

        var g = Geometry(1, input);
        g.Validate("pad");
        return new Shape(input[0], g.P, g.Q);
    }

    /// <inheritdoc/>
    public override DeviceTensor<float> Forward(DeviceTensor<float> x)
    {
        _batch = x.Shape[0];
        var y = OutputBuffer(_batch);
        Backend.Pad2dForward(Geometry(_batch, InputShape), x, y, Value);
        return y;
    }

    /// <inheritdoc/>
    public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!needInputGradient)
        {
            return null;
        }

        var dx = InputGradientBuffer(_batch > 0 ? _batch : throw new InvalidOperationException($"{Spec}: backward before forward."));
        Backend.Pad2dBackward(Geometry(_batch, InputShape), dy, dx);
        return dx;
    }

    private Pad2dGeometry Geometry(int batch, Shape sample) => new(batch, sample[0], sample[1], sample[2], Left, Right, Top, Bottom);
}
