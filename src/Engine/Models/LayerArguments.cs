using System.Globalization;

namespace GpuCnn.Models;

/// <summary>The positional and name=value arguments of one layer in a spec, parsed on first use.</summary>
public sealed class LayerArguments
{
    private readonly List<string> _positional = [];
    private readonly Dictionary<string, string> _named = new(StringComparer.OrdinalIgnoreCase);
    private readonly HashSet<string> _used = new(StringComparer.OrdinalIgnoreCase); // as the names are looked up
    private int _positionalUsed;
    private const int MaximumSize = 1_000_000; // a size or count in a spec: larger ones are typos, and keep the shape arithmetic far from overflow

    private readonly string? _text;
    private bool _parsed, _rawUsed;

    /// <summary>The arguments between a layer's parentheses (null: none given).</summary>
    public LayerArguments(string? text)
    {
        _text = text;
    }

    /// <summary>The text between the parentheses, for layers with their own grammar (residual); counts as all used.</summary>
    public string Raw()
    {
        _rawUsed = true;
        return _text ?? "";
    }

    private void Parse()
    {
        if (_parsed || _text is null)
        {
            _parsed = true;
            return;
        }

        _parsed = true;
        if (string.IsNullOrWhiteSpace(_text))
        {
            return; // "relu()": no arguments, as "relu" (one empty argument had been "takes 0 positional argument(s), got 1")
        }

        foreach (string raw in _text.Split(','))
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

    /// <summary>Positional argument <paramref name="index"/> as a positive integer.</summary>
    public int PositiveInt(int index, string what) => ParseInt(Positional(index, what), what, positive: true);

    /// <summary>How many positional arguments were given.</summary>
    public int PositionalCount
    {
        get
        {
            Parse();
            return _positional.Count;
        }
    }

    /// <summary>Positional argument <paramref name="index"/> as an integer of either sign (a padding that crops is negative).</summary>
    public int SignedInt(int index, string what)
    {
        string text = Positional(index, what).Trim();
        bool negative = text.StartsWith('-');
        // (A space after the sign is refused: ParseInt trims what it is given.)
        int magnitude = ParseInt(negative && !text[1..].StartsWith(' ') ? text[1..] : text, what, positive: false, signed: true, pair: negative ? text : null);
        return negative ? -magnitude : magnitude;
    }

    /// <summary>Positional argument <paramref name="index"/> as an integer or HxW pair.</summary>
    public (int, int) Pair(int index, string what) => ParsePair(Positional(index, what), what, positive: true);

    /// <summary>Positional argument <paramref name="index"/> as a finite number, or <paramref name="fallback"/> when absent.</summary>
    public float OptionalFloat(int index, string what, float fallback)
    {
        Parse();
        if (index >= _positional.Count)
        {
            return fallback;
        }

        return ParseFloat(Positional(index, what), what);
    }

    /// <summary>Positional argument <paramref name="index"/> as a finite number.</summary>
    public float Number(int index, string what) => ParseFloat(Positional(index, what), what);

    /// <summary>The name=value argument as a finite number, or <paramref name="fallback"/>.</summary>
    public float NamedFloat(string name, float fallback) =>
        Named(name) is { } text && _used.Add(name) ? ParseFloat(text, name) : fallback;

    /// <summary>The name=value argument as a positive integer, or <paramref name="fallback"/>.</summary>
    public int NamedPositiveInt(string name, int fallback) =>
        Named(name) is { } text && _used.Add(name) ? ParseInt(text, name, positive: true) : fallback;

    /// <summary>The name=value argument as true or false, or <paramref name="fallback"/>.</summary>
    public bool NamedBool(string name, bool fallback)
    {
        if (Named(name) is not { } text || !_used.Add(name))
        {
            return fallback;
        }

        return text.ToLowerInvariant() switch
        {
            "true" => true,
            "false" => false,
            _ => throw new SpecException($"{name} '{text}' is not true or false."),
        };
    }

    /// <summary>The name=value argument as a pair, or <paramref name="fallback"/>.</summary>
    public (int, int) NamedPair(string name, (int, int) fallback, bool positive) =>
        Named(name) is { } text && _used.Add(name) ? ParsePair(text, name, positive) : fallback;

    /// <summary>The name=value argument as a positive pair, or null.</summary>
    public (int, int)? OptionalNamedPair(string name) =>
        Named(name) is { } text && _used.Add(name) ? ParsePair(text, name, positive: true) : null;

    private string? Named(string name)
    {
        Parse();
        return _named.TryGetValue(name, out string? text) ? text : null;
    }

    /// <summary>Throws when an argument was given that the layer did not read.</summary>
    public void RequireAllUsed(string layer)
    {
        if (_rawUsed)
        {
            return;
        }

        Parse();
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
        Parse();
        if (index >= _positional.Count || _positional[index].Length == 0)
        {
            // dropout(p=0.5): the value was given, by a name this argument does not take.
            throw _named.TryGetValue(what, out string? value)
                ? new SpecException($"{what} is given by position, not by name: write {value} for {what}={value}.")
                : new SpecException($"missing {what}.");
        }

        _positionalUsed = Math.Max(_positionalUsed, index + 1);
        return _positional[index];
    }

    private static float ParseFloat(string text, string what)
    {
        if (!float.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out float value) || !float.IsFinite(value))
        {
            throw new SpecException($"{what} '{text}' is not a number.");
        }

        return value;
    }

    private static (int, int) ParsePair(string text, string what, bool positive)
    {
        string[] parts = text.Split('x', 'X');
        if (parts.Length > 2)
        {
            throw new SpecException($"{what} '{text}' is not an integer or HxW.");
        }

        int h = ParseInt(parts[0], what, positive, text);
        return parts.Length == 1 ? (h, h) : (h, ParseInt(parts[1], what, positive, text));
    }

    /// <summary>
    /// <paramref name="text"/> as an integer; <paramref name="pair"/>, when it is one side of a pair (or the whole of a
    /// signed number whose sign the caller took), is what the error quotes.
    /// </summary>
    private static int ParseInt(string text, string what, bool positive, string? pair = null, bool signed = false)
    {
        string quoted = pair ?? text, form = signed ? "integer" : pair is null ? "integer" : "integer or HxW";
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int value))
        {
            // Digits past int's range are a size too large (said below), not a malformed one.
            value = text.Trim() is { Length: > 0 } digits && digits.All(char.IsAsciiDigit)
                ? int.MaxValue
                : throw new SpecException($"{what} '{quoted}' is not {(signed ? "an" : positive ? "a positive" : "a non-negative")} {form}.");
        }

        if (positive && value == 0)
        {
            throw new SpecException($"{what} '{quoted}' is not a positive {form}.");
        }

        if (value > MaximumSize)
        {
            string most = MaximumSize.ToString("N0", CultureInfo.InvariantCulture);
            throw new SpecException(signed
                ? $"{what} '{quoted}' lies beyond ±{most}, the most a spec takes."
                : $"{what} '{quoted}' is larger than {most}, the most a spec takes.");
        }

        return value;
    }
}
