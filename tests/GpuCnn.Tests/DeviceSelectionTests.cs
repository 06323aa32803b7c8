using GpuCnn.Cpu;

namespace GpuCnn.Tests;

public sealed class DeviceSelectionTests
{
    [Fact]
    public void Listing_shows_every_kind_with_a_reason_for_the_absent_ones()
    {
        var devices = Backends.List();
        Assert.Equal(["cuda", "opencl", "cpu", "reference", "ilgpu-cpu"], devices.Select(d => d.Name));
        Assert.True(devices.Single(d => d.Name == "cpu").Available);
        Assert.True(devices.Single(d => d.Name == "reference").Available);
        Assert.True(devices.Single(d => d.Name == "ilgpu-cpu").Available);
        Assert.All(devices.Where(d => !d.Available), d => Assert.False(string.IsNullOrWhiteSpace(d.Reason)));
    }

    [Fact]
    public void Auto_picks_what_the_listing_says()
    {
        string expected = Backends.AutoChoice(Backends.List());
        using var backend = Backends.Open("auto");
        Assert.Equal(expected, backend.Name);
    }

    [Fact]
    public void Auto_order_is_cuda_then_opencl_then_the_fast_cpu_backend()
    {
        static DeviceInfo Device(string name, bool available) => new(name, "gpu", "-", 0, available, available ? null : "absent");
        Assert.Equal("cuda", Backends.AutoChoice([Device("cuda", true), Device("opencl", true)]));
        Assert.Equal("opencl", Backends.AutoChoice([Device("cuda", false), Device("opencl", true)]));
        Assert.Equal("cpu", Backends.AutoChoice([Device("cuda", false), Device("opencl", false), Device("ilgpu-cpu", true)]));
    }

    [Fact]
    public void Asking_for_an_absent_gpu_is_an_error_not_a_fallback()
    {
        var cuda = Backends.List().Single(d => d.Name == "cuda");
        Assert.SkipWhen(cuda.Available, "this machine has CUDA");
        var error = Assert.Throws<DeviceUnavailableException>(() => Backends.Open("cuda"));
        Assert.StartsWith("cuda: ", error.Message, StringComparison.Ordinal);
        Assert.Contains("no CUDA device", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Device_event_timing_covers_the_work_it_wraps_on_the_cpu_accelerator()
    {
        // The bench's GPU timer, on ILGPU's CPU accelerator (whose markers are host timestamps): it must time the
        // work inside, synchronise, and not throw; on CUDA the same calls record and read CUDA events.
        using var backend = Ilgpu.IlgpuDevices.OpenCpuAccelerator();
        using var x = backend.Upload(Tensor.Random([64, 64], 1));
        using var y = backend.Allocate<float>([64, 64]);
        double ms = backend.DeviceMilliseconds(() =>
        {
            backend.ActivationForward(default(Kernels.Tanh), x, y);
            Thread.Sleep(20);
        });
        Assert.InRange(ms, 15, 10_000);
        Assert.Equal(MathF.Tanh(Tensor.Random([64, 64], 1).Data[5]), backend.Download(y).Data[5], 6);
    }

    [Fact]
    public void Unknown_device_names_list_the_valid_ones()
    {
        var error = Assert.Throws<ArgumentException>(() => Backends.Open("tpu"));
        Assert.Contains("Unknown device 'tpu'; expected one of: auto, cpu, reference, ilgpu-cpu, cuda, opencl", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Shapes_reject_non_positive_dimensions_and_overflow()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new Shape(2, 0, 3));
        Assert.Throws<ArgumentOutOfRangeException>(() => new Shape(65536, 65536));
        Shape shape = [2, 3, 4];
        Assert.Equal(24, shape.Size);
        Assert.Equal(12, shape.SizeFrom(1));
        Assert.Equal("(2,3,4)", shape.ToString());
    }

    [Fact]
    public void Device_tensors_move_only_when_asked_and_report_their_bytes()
    {
        using var backend = Backends.Open("ilgpu-cpu");
        long before = backend.BytesAllocated;
        using (var tensor = backend.Upload<float>([2, 3], [1, 2, 3, 4, 5, 6]))
        {
            Assert.Equal(before + 24, backend.BytesAllocated);
            Assert.Equal([1f, 2, 3, 4, 5, 6], backend.DownloadArray(tensor));
        }

        Assert.Equal(before, backend.BytesAllocated);
    }
}
