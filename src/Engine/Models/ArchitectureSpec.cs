using System.Globalization;

namespace GpuCnn.Models;

/// <summary>A malformed architecture spec; the message names the offending layer (1-based) and its text.</summary>
public sealed class SpecException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public SpecException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public SpecException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public SpecException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>
/// Parses architecture specs: layers separated by top-level commas, e.g. LeNet-5's
/// <c>conv(6,5,pad=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)</c>.
/// Grammar: <c>conv(OUT,K[,stride=S][,pad=P][,dilation=D][,groups=G][,bias=false])</c>, <c>maxpool(K[,stride=S][,pad=P][,ceil_mode=true])</c>,
/// <c>avgpool(…[,count_include_pad=false])</c>, <c>globalavgpool</c>, <c>pad(P)</c> or <c>pad(LEFT,RIGHT,TOP,BOTTOM[,value=V])</c>, <c>batchnorm[(momentum=M,eps=E)]</c>, <c>dropout(P)</c>, <c>relu</c>, <c>relu6</c>,
/// <c>leakyrelu[(A)]</c>, <c>sigmoid</c>, <c>tanh</c>, <c>gelu</c>, <c>silu</c>, <c>flatten</c>, <c>dense(OUT)</c>,
/// <c>residual(BODY[; SHORTCUT])</c>; K, S, P, D are an integer or HxW such as 3x1. The names and their parsers live
/// in <see cref="LayerRegistry"/>; each layer formats its own spec. A whole spec may instead be the name of a
/// built-in architecture (<see cref="Named"/>): <c>lenet5</c>, <c>resnet8</c>.
/// </summary>
public static class ArchitectureSpec
{
    /// <summary>LeNet-5 for 1×28×28 inputs, the default model.</summary>
    public const string LeNet5 =
        "conv(6,5,pad=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)";

    /// <summary>
    /// A small ResNet for 28×28×1 and 32×32×3 inputs: a conv-bn-relu stem at 16 channels, three stages of one basic
    /// residual block each (16, 32, 64 channels; the second and third halve the resolution with a stride-2 first
    /// convolution and a 1×1 stride-2 projection shortcut with batch norm), global average pooling and a dense
    /// classifier. Convolutions before batch norm have no bias, as in torchvision's ResNets. 77,754 parameters on
    /// 1×28×28 inputs (78,042 on 3×32×32).
    /// </summary>
    public const string ResNet8 =
        "conv(16,3,pad=1,bias=false),batchnorm,relu," +
        "residual(conv(16,3,pad=1,bias=false),batchnorm,relu,conv(16,3,pad=1,bias=false),batchnorm),relu," +
        "residual(conv(32,3,stride=2,pad=1,bias=false),batchnorm,relu,conv(32,3,pad=1,bias=false),batchnorm; conv(32,1,stride=2,bias=false),batchnorm),relu," +
        "residual(conv(64,3,stride=2,pad=1,bias=false),batchnorm,relu,conv(64,3,pad=1,bias=false),batchnorm; conv(64,1,stride=2,bias=false),batchnorm),relu," +
        "globalavgpool,flatten,dense(10)";

    /// <summary>The built-in architectures that <c>--arch</c> and <see cref="Parse"/> accept by name.</summary>
    public static IReadOnlyDictionary<string, string> Named { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["lenet5"] = LeNet5,
        ["resnet8"] = ResNet8,
    };

    /// <summary>The spec itself, or the spec of the built-in architecture it names.</summary>
    internal static string Resolve(string spec) =>
        spec is not null && Named.TryGetValue(spec.Trim(), out string? named) ? named : spec!;

    /// <summary>Parses a spec (or the name of a built-in architecture) into fresh, unbuilt layers.</summary>
    public static IReadOnlyList<Layer> Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
        {
            throw new SpecException("architecture spec is empty.");
        }

        spec = Resolve(spec);
        if (spec.Length > MaximumLength)
        {
            throw new SpecException($"architecture spec is {spec.Length} characters long; at most {MaximumLength} are supported.");
        }

        var parts = SplitTopLevel(spec);
        var layers = new List<Layer>(parts.Count);
        for (int i = 0; i < parts.Count; i++)
        {
            try
            {
                layers.Add(ParseLayer(parts[i].Trim()));
            }
            catch (SpecException e)
            {
                throw new SpecException($"layer {i + 1} '{parts[i].Trim()}': {e.Message}");
            }
        }

        return layers;
    }

    /// <summary>The canonical spec of a list of layers (what model files store).</summary>
    public static string Format(IEnumerable<Layer> layers) => string.Join(",", layers.Select(l => l.Spec));

    /// <summary>The longest spec parsed (a model file's metadata is read from files of any origin).</summary>
    public const int MaximumLength = 1 << 16;

    /// <summary>The deepest nesting of parentheses parsed: residual blocks nest by recursion, which must not exhaust the stack.</summary>
    public const int MaximumNesting = 32;

    /// <summary>Splits at <paramref name="separator"/> outside parentheses.</summary>
    internal static List<string> SplitTopLevel(string spec, char separator = ',')
    {
        var parts = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < spec.Length; i++)
        {
            switch (spec[i])
            {
                case '(':
                    if (++depth > MaximumNesting)
                    {
                        throw new SpecException($"parentheses nest deeper than {MaximumNesting} levels at character {i + 1}.");
                    }

                    break;
                case ')':
                    if (--depth < 0)
                    {
                        throw new SpecException($"unbalanced ')' at character {i + 1} of '{spec}'.");
                    }

                    break;
                case var c when c == separator && depth == 0:
                    parts.Add(spec[start..i]);
                    start = i + 1;
                    break;
            }
        }

        if (depth != 0)
        {
            throw new SpecException($"unbalanced '(' in '{spec}'.");
        }

        parts.Add(spec[start..]);
        return parts;
    }

    private static Layer ParseLayer(string text)
    {
        if (text.Length == 0)
        {
            throw new SpecException("empty layer (two commas in a row, or a trailing comma).");
        }

        int open = text.IndexOf('(', StringComparison.Ordinal);
        string name = (open < 0 ? text : text[..open]).Trim().ToLowerInvariant();
        var args = new LayerArguments(open < 0 ? null : ArgumentText(text, open));
        var layer = LayerRegistry.Parse(name, args);
        args.RequireAllUsed(name);
        return layer;
    }

    private static string ArgumentText(string text, int open)
    {
        if (!text.EndsWith(')'))
        {
            throw new SpecException("expected ')' at the end.");
        }

        return text[(open + 1)..^1];
    }
}

/// <summary>Formats spec values.</summary>
internal static class SpecText
{
    public static string Pair((int H, int W) pair) =>
        pair.H == pair.W ? pair.H.ToString(CultureInfo.InvariantCulture) : $"{pair.H}x{pair.W}";
}
