using GpuCnn.Kernels;

namespace GpuCnn.Models;

/// <summary>
/// The layer names of the spec grammar and how each is parsed; every layer formats its own <see cref="Layer.Spec"/>.
/// A new layer or activation is one line here: an activation names its function struct, and the tests, `gpucnn
/// selftest` and the docs' tables cover every activation registered.
/// </summary>
public static class LayerRegistry
{
    private static readonly Dictionary<string, Func<LayerArguments, Layer>> Parsers = new(StringComparer.Ordinal)
    {
        ["conv"] = Conv2d.Parse,
        ["maxpool"] = MaxPool2d.Parse,
        ["avgpool"] = AvgPool2d.Parse,
        ["globalavgpool"] = _ => new GlobalAvgPool2d(),
        ["pad"] = ConstantPad2d.Parse,
        ["flatten"] = _ => new Flatten(),
        ["dense"] = Dense.Parse,
        ["residual"] = Residual.Parse,
        ["batchnorm"] = BatchNorm.Parse,
        ["dropout"] = Dropout.Parse,
        ["relu"] = Activation(default(Relu)),
        ["relu6"] = Activation(default(Relu6)),
        ["leakyrelu"] = args => ActivationLayer.Create(new LeakyRelu(args.OptionalFloat(0, "negative slope", 0.01f))),
        ["sigmoid"] = Activation(default(Sigmoid)),
        ["tanh"] = Activation(default(Tanh)),
        ["gelu"] = Activation(default(Gelu)),
        ["silu"] = Activation(default(Silu)),
    };

    /// <summary>Every layer name, in registration order.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Parsers.Keys];

    /// <summary>The names of the activation layers (each with its default arguments, e.g. leakyrelu's 0.01 slope).</summary>
    public static IReadOnlyList<string> ActivationNames { get; } = [.. Parsers.Where(p => IsActivation(p.Value)).Select(p => p.Key)];

    /// <summary>A fresh layer for <paramref name="name"/> with its arguments.</summary>
    public static Layer Parse(string name, LayerArguments args) =>
        Parsers.TryGetValue(name, out var parse)
            ? parse(args)
            : throw new SpecException($"unknown layer '{name}'; expected one of {string.Join(", ", Names)}.");

    /// <summary>A fresh activation layer for a registered activation name, with default arguments.</summary>
    public static ActivationLayer CreateActivation(string name) =>
        Parse(name, new LayerArguments(null)) as ActivationLayer ?? throw new ArgumentException($"'{name}' is not an activation.", nameof(name));

    private static Func<LayerArguments, Layer> Activation<TF>(TF function)
        where TF : struct, IActivationFunction => _ => ActivationLayer.Create(function);

    private static bool IsActivation(Func<LayerArguments, Layer> parse)
    {
        try
        {
            return parse(new LayerArguments(null)) is ActivationLayer;
        }
        catch (SpecException)
        {
            return false; // needs arguments: not a plain activation
        }
    }
}
