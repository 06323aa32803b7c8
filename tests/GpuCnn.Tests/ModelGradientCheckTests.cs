using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Whole models against finite differences: the gradient checks of single operations (GradientCheckTests, in double)
/// cannot see how layers are joined — fused activations, batch norm applying f′ as it reads dy, dense layers' two GEMMs,
/// residual branches, which dy each layer is handed. Here each parameter tensor's gradient, as <see cref="Sequential.Backward"/>
/// leaves it, is held against the central difference of the model's own loss along a random direction in that tensor.
/// </summary>
/// <remarks>
/// The model runs in float; the loss is taken in double on the host from the downloaded logits, and the step is large
/// enough (h = 10⁻³ along a direction of elements in [−1, 1]) that float rounding of the logits (~10⁻⁷) moves the
/// difference quotient by ~10⁻⁴ at most, while the truncation error of the smooth activations stays below that (and
/// small enough not to carry max pooling or leaky ReLU across a kink here: at 3·10⁻³ one case did, and its quotient
/// fell 11 % short on every backend alike). The
/// tolerance, 2·10⁻³ + 2 % of the derivative, is far below what a wrong f′, a dropped branch or a missing batch-norm
/// term gives (tens of percent and more).
/// </remarks>
public abstract class ModelGradientCheckTests(BackendFixture fixture)
{
    public static TheoryData<string, string> Models => new()
    {
        { "conv,tanh,avgpool,strided conv,sigmoid,dense,gelu,dense", "conv(3,3,pad=1),tanh,avgpool(2),conv(4,3,stride=2,pad=1),sigmoid,flatten,dense(5),gelu,dense(3)" },
        { "batch norm in training mode, silu after it, fused tanh", "conv(4,3,pad=1,bias=false),batchnorm,silu,globalavgpool,flatten,dense(6),batchnorm,tanh,dense(3)" },
        { "batch norm over maps with fused tanh, dense with fused sigmoid", "conv(4,3,pad=1,bias=false),batchnorm,tanh,flatten,dense(6),sigmoid,dense(3)" },
        // Parameter-free layers first (their input gradient is not computed), then a batch norm with a fused relu asked
        // for no input gradient; a residual block first, whose leaky relu of negative slope stays unfused.
        { "pooling first, then batch norm with fused relu and no input gradient", "maxpool(2,stride=1),batchnorm,relu,conv(3,3,pad=1),flatten,dense(3)" },
        { "residual first, leaky relu of negative slope", "residual(conv(2,3,pad=1),leakyrelu(-0.2)),flatten,dense(3)" },
        { "residual with a projection, fused sigmoid", "conv(4,3,pad=1),residual(conv(4,3,pad=1),tanh,conv(4,3,pad=1); conv(4,1)),sigmoid,flatten,dense(3)" },
        { "identity residual, leaky relu, max pooling", "conv(4,3,pad=1),leakyrelu(0.1),residual(conv(4,3,pad=1),gelu,conv(4,3,pad=1)),maxpool(2),flatten,dense(3)" },
        { "groups, dilation, no bias", "conv(4,3,pad=1,groups=2),silu,conv(4,3,dilation=2,groups=4,bias=false),flatten,dense(3)" },
        { "dropout with a fixed mask", "conv(3,3,pad=1),tanh,flatten,dense(8),dropout(0.3),sigmoid,dense(3)" },
        // Padding as a layer: one-sided zeros before a convolution (its input gradient cropped back), a crop after it.
        { "one-sided padding, a crop", "conv(3,3),tanh,pad(0,1,2,0),conv(4,3,stride=2),pad(-1,0,0,-1,value=0.5),sigmoid,flatten,dense(3)" },
    };

    [Theory]
    [Trait("Category", "GradientCheck")]
    [MemberData(nameof(Models))]
    public void Every_parameter_gradient_matches_finite_differences_of_the_models_loss(string name, string spec)
    {
        var backend = fixture.Require();
        const int batch = 4, classes = 3;
        using var model = Sequential.Create(spec, [2, 6, 6], backend, seed: 11);
        using var x = backend.Upload<float>([batch, 2, 6, 6], TestData.Uniform(batch * 72, 12));
        int[] labels = [0, 2, 1, 2];
        using var y = backend.Upload<int>([batch], labels);
        using var dlogits = backend.Allocate<float>([batch, classes]);
        using var loss = backend.Allocate<float>([1]);

        model.SetRandomKey(7); // the same dropout mask for every pass
        backend.SoftmaxCrossEntropy(model.Forward(x), y, dlogits, loss);
        model.Backward(dlogits);

        int checkedTensors = 0;
        foreach (var (key, parameter) in model.NamedParameters())
        {
            float[] value = backend.DownloadArray(parameter.Value), gradient = backend.DownloadArray(parameter.Gradient);
            float[] direction = TestData.Uniform(value.Length, 13 + checkedTensors);
            double analytic = 0;
            for (int i = 0; i < value.Length; i++)
            {
                analytic += (double)gradient[i] * direction[i];
            }

            const float h = 1e-3f;
            double Loss(float sign)
            {
                backend.Upload<float>([.. value.Select((v, i) => v + (sign * h * direction[i]))], parameter.Value);
                model.SetRandomKey(7);
                return CrossEntropy(backend.DownloadArray(model.Forward(x)), labels, classes);
            }

            double numeric = (Loss(1f) - Loss(-1f)) / (2 * h);
            backend.Upload<float>(value, parameter.Value);
            Assert.True(Math.Abs(numeric - analytic) <= 2e-3 + (0.02 * Math.Abs(numeric)),
                $"{backend.Name} {name}: {key}'s gradient along a random direction is {analytic:G6}, the model's loss changes at {numeric:G6}");
            checkedTensors++;
        }

        Assert.Equal(model.NamedParameters().Count(), checkedTensors);
    }

    /// <summary>The mean cross-entropy of float logits, in double.</summary>
    private static double CrossEntropy(float[] logits, int[] labels, int classes)
    {
        double sum = 0;
        for (int n = 0; n < labels.Length; n++)
        {
            var row = logits.AsSpan(n * classes, classes);
            double max = row.ToArray().Max(), total = 0;
            foreach (float z in row)
            {
                total += Math.Exp(z - max);
            }

            sum += max + Math.Log(total) - row[labels[n]];
        }

        return sum / labels.Length;
    }
}

public sealed class ReferenceModelGradientCheck(ReferenceFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<ReferenceFixture>;

public sealed class CpuModelGradientCheck(CpuFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<CpuFixture>;

public sealed class IlgpuCpuModelGradientCheck(IlgpuCpuFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuFixture>;

public sealed class IlgpuCpuImplicitModelGradientCheck(IlgpuCpuImplicitFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuImplicitFixture>;

public sealed class IlgpuCpuFewTapsModelGradientCheck(IlgpuCpuFewTapsFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuFewTapsFixture>;

public sealed class IlgpuCpuNarrow32ModelGradientCheck(IlgpuCpuNarrow32Fixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuNarrow32Fixture>;

public sealed class IlgpuCpuBlockedFewTapsModelGradientCheck(IlgpuCpuBlockedFewTapsFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuBlockedFewTapsFixture>;

public sealed class CudaModelGradientCheck(CudaFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<CudaFixture>;

public sealed class CudaNarrow32ModelGradientCheck(CudaNarrow32Fixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<CudaNarrow32Fixture>;

public sealed class CudaBlockedFewTapsModelGradientCheck(CudaBlockedFewTapsFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<CudaBlockedFewTapsFixture>;

public sealed class IlgpuCpuGpuGroupsModelGradientCheck(IlgpuCpuGpuGroupsFixture fixture) : ModelGradientCheckTests(fixture), IClassFixture<IlgpuCpuGpuGroupsFixture>;
