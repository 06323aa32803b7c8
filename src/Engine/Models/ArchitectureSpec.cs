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
/// Grammar: <c>conv(OUT,K[,stride=S][,pad=P])</c>, <c>maxpool(K[,stride=S][,pad=P])</c>, <c>avgpool(…)</c>,
/// <c>relu</c>, <c>leakyrelu[(A)]</c>, <c>sigmoid</c>, <c>tanh</c>, <c>flatten</c>, <c>dense(OUT)</c>; K, S, P are an
/// integer or HxW such as 3x1.
/// </summary>
public static class ArchitectureSpec
{
    /// <summary>LeNet-5 for 1×28×28 inputs, the default model.</summary>
    public const string LeNet5 =
        "conv(6,5,pad=2),relu,maxpool(2),conv(16,5),relu,maxpool(2),flatten,dense(120),relu,dense(84),relu,dense(10)";

    /// <summary>Parses a spec into fresh, unbuilt layers.</summary>
    public static IReadOnlyList<Layer> Parse(string spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
        {
            throw new SpecException("architecture spec is empty.");
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

    private static List<string> SplitTopLevel(string spec)
    {
        var parts = new List<string>();
        int depth = 0, start = 0;
        for (int i = 0; i < spec.Length; i++)
        {
            switch (spec[i])
            {
                case '(':
                    depth++;
                    break;
                case ')':
                    if (--depth < 0)
                    {
                        throw new SpecException($"unbalanced ')' at character {i + 1} of '{spec}'.");
                    }

                    break;
                case ',' when depth == 0:
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
        Layer layer = name switch
        {
            "conv" => new Conv2d(args.PositiveInt(0, "output channels"), args.Pair(1, "kernel"),
                args.NamedPair("stride", (1, 1), positive: true), args.NamedPair("pad", (0, 0), positive: false)),
            "maxpool" => new MaxPool2d(args.Pair(0, "kernel"), args.OptionalNamedPair("stride"), args.NamedPair("pad", (0, 0), positive: false)),
            "avgpool" => new AvgPool2d(args.Pair(0, "kernel"), args.OptionalNamedPair("stride"), args.NamedPair("pad", (0, 0), positive: false)),
            "relu" => new ActivationLayer(Activation.Relu),
            "leakyrelu" => new ActivationLayer(Activation.LeakyRelu, args.OptionalFloat(0, "negative slope", 0.01f)),
            "sigmoid" => new ActivationLayer(Activation.Sigmoid),
            "tanh" => new ActivationLayer(Activation.Tanh),
            "flatten" => new Flatten(),
            "dense" => new Dense(args.PositiveInt(0, "output features")),
            _ => throw new SpecException(
                $"unknown layer '{name}'; expected conv, maxpool, avgpool, relu, leakyrelu, sigmoid, tanh, flatten or dense."),
        };
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

    /// <summary>The positional and name=value arguments of one layer.</summary>
    private sealed class LayerArguments
    {
        private readonly List<string> _positional = [];
        private readonly Dictionary<string, string> _named = new(StringComparer.OrdinalIgnoreCase);
        private readonly HashSet<string> _used = [];
        private int _positionalUsed;

        public LayerArguments(string? text)
        {
            if (text is null)
            {
                return;
            }

            foreach (string raw in text.Split(','))
            {
                string part = raw.Trim();
                int eq = part.IndexOf('=', StringComparison.Ordinal);
                if (eq < 0)
                {
                    if (_named.Count > 0)
                    {
                        throw new SpecException($"positional argument '{part}' after a named one.");
                    }

                    _positional.Add(part);
                }
                else if (!_named.TryAdd(part[..eq].Trim(), part[(eq + 1)..].Trim()))
                {
                    throw new SpecException($"'{part[..eq].Trim()}' given twice.");
                }
            }
        }

        public int PositiveInt(int index, string what) => ParseInt(Positional(index, what), what, positive: true);

        public (int, int) Pair(int index, string what) => ParsePair(Positional(index, what), what, positive: true);

        public float OptionalFloat(int index, string what, float fallback)
        {
            if (index >= _positional.Count)
            {
                return fallback;
            }

            string text = Positional(index, what);
            if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
            {
                throw new SpecException($"{what} '{text}' is not a number.");
            }

            return value;
        }

        public (int, int) NamedPair(string name, (int, int) fallback, bool positive) =>
            _named.TryGetValue(name, out string? text) && _used.Add(name) ? ParsePair(text, name, positive) : fallback;

        public (int, int)? OptionalNamedPair(string name) =>
            _named.TryGetValue(name, out string? text) && _used.Add(name) ? ParsePair(text, name, positive: true) : null;

        public void RequireAllUsed(string layer)
        {
            if (_positional.Count > _positionalUsed)
            {
                throw new SpecException($"{layer} takes {_positionalUsed} positional argument(s), got {_positional.Count}.");
            }

            string? unknown = _named.Keys.FirstOrDefault(k => !_used.Contains(k));
            if (unknown is not null)
            {
                throw new SpecException($"{layer} has no option '{unknown}'.");
            }
        }

        private string Positional(int index, string what)
        {
            if (index >= _positional.Count || _positional[index].Length == 0)
            {
                throw new SpecException($"missing {what}.");
            }

            _positionalUsed = Math.Max(_positionalUsed, index + 1);
            return _positional[index];
        }

        private static (int, int) ParsePair(string text, string what, bool positive)
        {
            string[] parts = text.Split('x', 'X');
            if (parts.Length > 2)
            {
                throw new SpecException($"{what} '{text}' is not an integer or HxW.");
            }

            int h = ParseInt(parts[0], what, positive);
            return parts.Length == 1 ? (h, h) : (h, ParseInt(parts[1], what, positive));
        }

        private static int ParseInt(string text, string what, bool positive)
        {
            if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int value) ||
                (positive && value == 0) || value > 1_000_000)
            {
                throw new SpecException($"{what} '{text}' is not {(positive ? "a positive" : "a non-negative")} integer (or HxW).");
            }

            return value;
        }
    }
}

/// <summary>Formats spec values.</summary>
internal static class SpecText
{
    public static string Pair((int H, int W) pair) =>
        pair.H == pair.W ? pair.H.ToString(CultureInfo.InvariantCulture) : $"{pair.H}x{pair.W}";
}
