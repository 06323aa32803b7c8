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

    [Theory]
    [InlineData("conv(4,3,pad=1),gelu,silu,flatten,dense(5)")]
    [InlineData("conv(32,3,pad=1),residual(conv(32,3,stride=2,pad=1),relu,conv(32,3,pad=1); conv(32,1,stride=2)),flatten,dense(10)")]
    [InlineData("residual(conv(3,3,pad=1)),residual(residual(relu),tanh; maxpool(1)),flatten,dense(2)")]
    [InlineData("pad(1),conv(4,3),pad(0,1,0,1),conv(4,3,stride=2),pad(-1,2,3,-4,value=-0.5),flatten,dense(2)")]
    public void New_layers_and_nested_residual_blocks_round_trip(string spec) =>
        Assert.Equal(spec, ArchitectureSpec.Format(ArchitectureSpec.Parse(spec)));

    [Fact]
    public void Residual_blocks_name_their_tensors_as_a_pytorch_module_with_body_and_shortcut()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create(
            "conv(4,3,pad=1),relu,flatten,dense(4),residual(dense(4),relu,dense(4)),residual(dense(3); dense(3)),dense(2)", [1, 5, 5], backend);
        Assert.Equal(
            ["0.weight", "0.bias", "3.weight", "3.bias", "4.body.0.weight", "4.body.0.bias", "4.body.2.weight", "4.body.2.bias",
             "5.body.0.weight", "5.body.0.bias", "5.shortcut.0.weight", "5.shortcut.0.bias", "6.weight", "6.bias"],
            model.NamedParameters().Select(p => p.Key));
        Assert.Equal(new Shape(3, 4), model.NamedParameters().Single(p => p.Key == "5.shortcut.0.weight").Parameter.Shape);
    }

    [Theory]
    [InlineData("conv(4,3,pad=1),residual(conv(8,3,stride=2,pad=1); conv(4,1)),flatten,dense(10)",
        "layer 2 'residual(conv(8,3,stride=2,pad=1); conv(4,1))' on input (4,8,8): the body gives (8,4,4) but the shortcut gives (4,8,8)")]
    [InlineData("residual(conv(2,3)),flatten,dense(3)", "the body gives (2,6,6) but the shortcut gives (4,8,8)")]
    [InlineData("residual(conv(4,9)),flatten,dense(3)", "layer 1 'residual(conv(4,9))' on input (4,8,8): body layer 1 'conv(4,9)' on input (4,8,8): kernel 9x9")]
    public void Residual_shape_mismatches_are_one_line_naming_both_shapes(string spec, string message)
    {
        using var backend = new ReferenceBackend();
        var error = Assert.Throws<SpecException>(() => Sequential.Create(spec, [4, 8, 8], backend));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain('\n', error.Message);
    }

    [Theory]
    [InlineData("residual(conv(2,3); conv(2,3); conv(2,3))", "expected residual(BODY) or residual(BODY; SHORTCUT)")]
    [InlineData("residual()", "expected residual(BODY) or residual(BODY; SHORTCUT)")]
    [InlineData("residual(conv(2,3),dance)", "layer 1 'residual(conv(2,3),dance)': body: layer 2 'dance': unknown layer 'dance'")]
    public void Bad_residual_specs_say_what_is_wrong(string spec, string message)
    {
        var error = Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(spec));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Train_and_eval_reach_every_layer_inside_containers()
    {
        using var backend = new ReferenceBackend();
        using var model = Sequential.Create("conv(2,3,pad=1),residual(conv(2,3,pad=1),relu; conv(2,1)),flatten,dense(3)", [1, 4, 4], backend);
        var residual = (Residual)model.Layers[1];
        IEnumerable<Layer> Every() => model.Layers.Concat(residual.Body).Concat(residual.Shortcut);
        Assert.All(Every(), l => Assert.True(l.Training));
        model.Eval();
        Assert.False(model.Training);
        Assert.All(Every(), l => Assert.False(l.Training));
        model.Train();
        Assert.All(Every(), l => Assert.True(l.Training));
    }

    [Fact]
    public void Buffers_are_saved_and_loaded_with_the_parameters_but_never_trained()
    {
        using var backend = new ReferenceBackend();
        using var model = new Sequential([new Flatten(), new CountingLayer(), new Dense(2)], [1, 2, 2], backend);
        Assert.Equal(["2.weight", "2.bias"], model.NamedParameters().Select(p => p.Key));
        Assert.Equal(["1.seen"], model.NamedBuffers().Select(b => b.Key));
        Assert.Equal(["2.weight", "2.bias", "1.seen"], model.StateDict().Keys);

        var state = model.StateDict();
        state["1.seen"] = new Tensor(new Shape(1), [41f]);
        model.LoadStateDict(state);
        Assert.Equal(41f, model.StateDict()["1.seen"].Data[0]);
        state.Remove("1.seen");
        Assert.Contains("tensor '1.seen' is missing", Assert.Throws<ArgumentException>(() => model.LoadStateDict(state)).Message, StringComparison.Ordinal);
    }

    /// <summary>A pass-through layer with one buffer, standing in for running statistics.</summary>
    private sealed class CountingLayer : Layer
    {
        private DeviceTensor<float>? _seen;

        public override string Spec => "counting";

        public override IEnumerable<(string Name, DeviceTensor<float> Buffer)> NamedBuffers() => [("seen", _seen!)];

        public override DeviceTensor<float> Forward(DeviceTensor<float> x) => x;

        public override DeviceTensor<float>? Backward(DeviceTensor<float> dy, bool needInputGradient) => needInputGradient ? dy : null;

        protected override Shape InferOutputShape(Shape input) => input;

        protected override void CreateParameters(Random init) => _seen = Backend.Allocate<float>([1]);

        protected override void ReleaseBuffers() => _seen?.Dispose();
    }

    /// <summary>A culture whose minus is U+2212 (Swedish) formats no spec with it: negative paddings read back.</summary>
    [Fact]
    public void Specs_format_negative_numbers_in_the_invariant_culture()
    {
        var swedish = System.Globalization.CultureInfo.GetCultureInfo("sv-SE");
        Assert.SkipUnless(swedish.NumberFormat.NegativeSign == "\u2212", "no ICU culture data here (sv-SE's minus is not U+2212)");
        var saved = System.Globalization.CultureInfo.CurrentCulture;
        try
        {
            System.Globalization.CultureInfo.CurrentCulture = swedish;
            const string spec = "pad(-1,2,3,-4,value=-0.5),pad(-2),leakyrelu(-0.2),flatten,dense(2)";
            Assert.Equal(spec, ArchitectureSpec.Format(ArchitectureSpec.Parse(spec)));
            Assert.Equal("pad(1,value=-0)", new ConstantPad2d(1, -0f).Spec); // a negative zero keeps its sign
        }
        finally
        {
            System.Globalization.CultureInfo.CurrentCulture = saved;
        }
    }

    [Fact]
    public void Whitespace_case_and_defaults_are_normalised()
    {
        Assert.Equal("conv(8,3),leakyrelu(0.01),maxpool(2),flatten,dense(4)",
            ArchitectureSpec.Format(ArchitectureSpec.Parse(" Conv(8, 3, stride=1) , LeakyReLU , maxpool(2,stride=2), flatten ,dense(4)")));
        // Option names too, as they are looked up: Pad is pad (it had been read, then called unknown).
        Assert.Equal("conv(6,5,pad=2),batchnorm(momentum=0.2)", ArchitectureSpec.Format(ArchitectureSpec.Parse("conv(6,5,Pad=2),batchnorm(Momentum=0.2)")));
        // Empty parentheses are no arguments, as PyTorch's ReLU() (they had been one empty argument: "relu takes 0
        // positional argument(s), got 1").
        Assert.Equal("relu,globalavgpool,flatten,dense(2)", ArchitectureSpec.Format(ArchitectureSpec.Parse("relu(),globalavgpool( ),flatten(),dense(2)")));
    }

    [Theory]
    [InlineData("conv(6,5),relu,maxpool(0)", "layer 3 'maxpool(0)': kernel '0' is not a positive integer")]
    [InlineData("conv(6),relu", "layer 1 'conv(6)': missing kernel")]
    [InlineData("conv(),relu", "layer 1 'conv()': missing output channels")]
    [InlineData("conv(6,5),softmax", "layer 2 'softmax': unknown layer 'softmax'")]
    [InlineData("conv(6,5,padding_mode=zeros)", "layer 1 'conv(6,5,padding_mode=zeros)': conv has no option 'padding_mode'")]
    [InlineData("conv(6,5),,relu", "layer 2 '': empty layer")]
    [InlineData("conv(6,5", "unbalanced '('")]
    [InlineData("dense(10,3)", "layer 1 'dense(10,3)': dense takes 1 positional argument(s), got 2")]
    [InlineData("conv(6,3x3x3)", "layer 1 'conv(6,3x3x3)': kernel '3x3x3' is not an integer or HxW")]
    [InlineData("conv(6,3x)", "layer 1 'conv(6,3x)': kernel '3x' is not a positive integer or HxW")]
    [InlineData("conv(2000000,3)", "layer 1 'conv(2000000,3)': output channels '2000000' is larger than 1,000,000, the most a spec takes")]
    [InlineData("dense(99999999999)", "layer 1 'dense(99999999999)': output features '99999999999' is larger than 1,000,000")]
    [InlineData("dense(0)", "layer 1 'dense(0)': output features '0' is not a positive integer.")]
    [InlineData("conv(6,5,Pad=2,PAD=1)", "layer 1 'conv(6,5,Pad=2,PAD=1)': 'PAD' given twice")]
    [InlineData("leakyrelu(abc)", "layer 1 'leakyrelu(abc)': negative slope 'abc' is not a number")]
    [InlineData("pad(1,2),conv(2,3)", "layer 1 'pad(1,2)': pad takes one amount for every side or four (left, right, top, bottom), got 2.")]
    [InlineData("pad(1,2,3,x)", "layer 1 'pad(1,2,3,x)': bottom padding 'x' is not an integer.")]
    [InlineData("pad(--1)", "layer 1 'pad(--1)': padding '--1' is not an integer.")]
    [InlineData("pad(-2000000)", "layer 1 'pad(-2000000)': padding '-2000000' lies beyond ±1,000,000, the most a spec takes.")]
    [InlineData("pad(1,value=inf)", "layer 1 'pad(1,value=inf)': value 'inf' is not a number.")]
    [InlineData("pad(1,mode=reflect)", "layer 1 'pad(1,mode=reflect)': pad has no option 'mode'.")]
    [InlineData("pad(- 1)", "layer 1 'pad(- 1)': padding '- 1' is not an integer.")]
    public void Bad_specs_point_at_the_offending_layer(string spec, string message)
    {
        var error = Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(spec));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Specs_nested_too_deep_or_too_long_are_refused_before_any_recursion()
    {
        // A model file's metadata comes from anywhere: 30,000 nested blocks had overflowed the stack (uncatchable).
        string deep = string.Concat(Enumerable.Repeat("residual(", 30_000)) + "relu" + new string(')', 30_000);
        Assert.Equal($"architecture spec is {deep.Length} characters long; at most 65536 are supported.",
            Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(deep)).Message);
        string nested = string.Concat(Enumerable.Repeat("residual(", 33)) + "relu" + new string(')', 33);
        Assert.Equal("parentheses nest deeper than 32 levels at character 297.", Assert.Throws<SpecException>(() => ArchitectureSpec.Parse(nested)).Message);
        string allowed = string.Concat(Enumerable.Repeat("residual(", 16)) + "relu" + new string(')', 16);
        Assert.Single(ArchitectureSpec.Parse(allowed));
    }

    [Theory]
    [InlineData("conv(6,5),relu,maxpool(2),conv(16,13),flatten,dense(10)", "layer 4 'conv(16,13)' on input (6,12,12): kernel 13x13 is larger than the padded input 12x12")]
    [InlineData("conv(6,5),dense(10)", "layer 2 'dense(10)' on input (6,24,24): needs a flat (features) input, got (6,24,24); add 'flatten' before it")]
    [InlineData("conv(6,5),relu", "ends with shape (6,24,24)")]
    [InlineData("flatten,dense(4),conv(2,1)", "layer 3 'conv(2,1)' on input (4): needs a (C,H,W) input")]
    [InlineData("pad(2,-31,0,0),flatten,dense(2)", "layer 1 'pad(2,-31,0,0)' on input (1,28,28): padding (left 2, right -31, top 0, bottom 0) crops more than the 28x28 input has (PyTorch refuses it too).")]
    [InlineData("pad(-14,-14,0,0),flatten,dense(2)", "layer 1 'pad(-14,-14,0,0)' on input (1,28,28): padding (left -14, right -14, top 0, bottom 0) crops the 28x28 input to 28x0; at least 1x1 must be left.")]
    public void Shape_errors_name_the_layer_and_its_input(string spec, string message)
    {
        using var backend = new ReferenceBackend();
        var error = Assert.Throws<SpecException>(() => Sequential.Create(spec, [1, 28, 28], backend));
        Assert.Contains(message, error.Message, StringComparison.Ordinal);
    }
}
