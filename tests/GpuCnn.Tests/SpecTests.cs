using GpuCnn.Cpu;
using GpuCnn.Models;

namespace GpuCnn.Tests;

public sealed class SpecTests
{
    [Fact]
    public void LeNet5_parses_builds_and_formats_back_to_itself()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(ArchitectureSpec.LeNet5, [1, 28, 28], backend);
        Assert.Equal(ArchitectureSpec.LeNet5, model.Spec);
        Assert.Equal(12, model.Layers.Count);
        Assert.Equal(10, model.Classes);
        Assert.Equal(
            ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias", "9.weight", "9.bias", "11.weight", "11.bias"],
            model.NamedParameters().Select(p => p.Key));
        Assert.Equal(new Shape(16, 6, 5, 5), model.NamedParameters().Single(p => p.Key == "3.weight").Parameter.Shape);
        Assert.Equal(new Shape(120, 400), model.NamedParameters().Single(p => p.Key == "7.weight").Parameter.Shape);
    }

    [Theory]
    [InlineData("conv(4,3x1,stride=2,pad=1x0),leakyrelu(0.2),avgpool(2,stride=1),flatten,dense(5)")]
    [InlineData("maxpool(3,stride=1,pad=1),conv(2,2x3,stride=1x2),sigmoid,tanh,relu,flatten,dense(3)")]
    public void Every_layer_form_round_trips(string spec)
    {
        var layers = ArchitectureSpec.Parse(spec);
        Assert.Equal(spec, ArchitectureSpec.Format(layers));
    }

    [Fact]
    public void Whitespace_case_and_defaults_are_normalised()
    {
        Assert.Equal("conv(8,3),leakyrelu(0.01),maxpool(2),flatten,dense(4)",
            ArchitectureSpec.Format(ArchitectureSpec.Parse(" Conv(8, 3, stride=1) , LeakyReLU , maxpool(2,stride=2), flatten ,dense(4)")));
    }

    [Theory]
    [InlineData("conv(6,5),relu,maxpool(0)", "layer 3 'maxpool(0)': kernel '0' is not a positive integer")]
    [InlineData("conv(6),relu", "layer 1 'conv(6)': missing kernel")]
    [InlineData("conv(6,5),softmax", "layer 2 'softmax': unknown layer 'softmax'")]
    [InlineData("conv(6,5,dilation=2)", "layer 1 'conv(6,5,dilation=2)': conv has no option 'dilation'")]
    [InlineData("conv(6,5),,relu", "layer 2 '': empty layer")]
    [InlineData("conv(6,5", "unbalanced '('")]
    [InlineData("dense(10,3)", "layer 1 'dense(10,3)': dense takes 1 positional argument(s), got 2")]
    [InlineData("conv(6,3x3x3)", "layer 1 'conv(6,3x3x3)': kernel '3x3x3' is not an integer or HxW")]
    [InlineData("leakyrelu(abc)", "layer 1 'leakyrelu(abc)': negative slope 'abc' is not a number")]
    public void Bad_specs_point_at_the_offending_layer(string spec, string message)
    {
        var error = Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(spec));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("conv(6,5),relu,maxpool(2),conv(16,13),flatten,dense(10)", "layer 4 'conv(16,13)' on input (6,12,12): kernel 13x13 is larger than the padded input 12x12")]
    [InlineData("conv(6,5),dense(10)", "layer 2 'dense(10)' on input (6,24,24): needs a flat (features) input, got (6,24,24); add 'flatten' before it")]
    [InlineData("conv(6,5),relu", "ends with shape (6,24,24)")]
    [InlineData("flatten,dense(4),conv(2,1)", "layer 3 'conv(2,1)' on input (4): needs a (C,H,W) input")]
    public void Shape_errors_name_the_layer_and_its_input(string spec, string message)
    {
        using var backend = new ReferenceBackend();
        var error = Assert.Throws<SpecException>(() => Sequential.Create(spec, [1, 28, 28], backend));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
