using GpuCnn.Cpu;
using GpuCnn.Models;
using GpuCnn.Tests.Support;

namespace GpuCnn.Tests;

/// <summary>
/// Who frees what: a model owns its layers, their parameters, buffers and outputs, and lends them out
/// (<see cref="DeviceTensor{T}.IsLent"/>); a caller's Dispose on a lent tensor does nothing, and a layer belongs to one model.
/// </summary>
public sealed class OwnershipTests
{
    private const string Spec = "conv(4,3,pad=1),batchnorm,relu,maxpool(2),flatten,dense(3)";

    [Fact]
    public void Disposing_what_forward_returns_leaves_the_model_working()
    {
        using var backend = Backends.Open("cpu");
        using var model = Sequential.Create(Spec, [1, 6, 6], backend, seed: 1);
        using var x = backend.Upload<float>([2, 1, 6, 6], Enumerable.Range(0, 72).Select(i => (i % 7) - 3f).ToArray());
        float[] first;
        using (var y = model.Forward(x))
        {
            Assert.True(y.IsLent);
            first = backend.Download(y).Data;
        }

        var again = model.Forward(x);
        Assert.False(again.IsDisposed);
        TensorAssert.Identical<float>(first, backend.Download(again).Data, "the second forward");
        var weight = model.NamedParameters().First().Parameter.Value;
        weight.Dispose(); // lent: does nothing
        Assert.False(weight.IsDisposed);
    }

    [Fact]
    public void A_layer_belongs_to_one_model()
    {
        using var backend = Backends.Open("cpu");
        var layers = ArchitectureSpec.Parse(Spec);
        using var first = new Sequential(layers, [1, 6, 6], backend, seed: 1);
        var weights = first.StateDict().ToDictionary(p => p.Key, p => p.Value.Data);
        long allocated = backend.BytesAllocated;

        var error = Assert.Throws<InvalidOperationException>(() => new Sequential(layers, [1, 6, 6], backend, seed: 2));
        Assert.Equal("conv(4,3,pad=1): this layer already belongs to a model; give each model its own layers (parse the spec again: " +
            "ArchitectureSpec.Parse).", error.Message);
        Assert.Equal(allocated, backend.BytesAllocated); // nothing built, nothing leaked
        foreach (var (key, tensor) in first.StateDict())
        {
            TensorAssert.Identical<float>(weights[key], tensor.Data, key); // not re-initialised
        }
    }

    [Fact]
    public void Layers_of_a_model_that_failed_to_build_say_so_when_reused()
    {
        using var backend = Backends.Open("cpu");
        var layers = ArchitectureSpec.Parse("conv(4,3),relu,conv(4,5),flatten,dense(3)");
        Assert.Throws<SpecException>(() => new Sequential(layers, [1, 4, 4], backend)); // the 5×5 layer meets a 2×2 input
        // It had said the layers "already belong to a model", though no model exists.
        var error = Assert.Throws<InvalidOperationException>(() => new Sequential(layers, [1, 12, 12], backend));
        Assert.Equal("conv(4,3): this layer was built into a model that has since been disposed or failed to build, which freed it; layers are " +
            "not reused (parse the spec again: ArchitectureSpec.Parse).", error.Message);
    }

    [Fact]
    public void Disposing_the_model_frees_everything_it_lent()
    {
        using var backend = Backends.Open("cpu");
        void TrainOneStep()
        {
            using var model = Sequential.Create(Spec, [1, 6, 6], backend, seed: 1);
            using var optimizer = new Sgd(backend, model.NamedParameters(), new SgdOptions(0.1f, 0.9f));
            using var x = backend.Upload<float>([2, 1, 6, 6], new float[72]);
            model.Forward(x).Dispose();
            optimizer.Step();
        }

        TrainOneStep(); // the backend's own scratch grows once and stays; what is left after that is what a model leaked
        long before = backend.BytesAllocated;
        TrainOneStep();
        Assert.Equal(before, backend.BytesAllocated);
        TensorAssert.NothingDroppedUndisposed(backend);
    }

    [Fact]
    public void Layers_and_parameters_have_no_public_dispose()
    {
        foreach (var type in new[] { typeof(Layer), typeof(Parameter) })
        {
            Assert.False(typeof(IDisposable).IsAssignableFrom(type), $"{type.Name} is IDisposable");
            Assert.Null(type.GetMethod("Dispose", Type.EmptyTypes));
        }
    }
}
