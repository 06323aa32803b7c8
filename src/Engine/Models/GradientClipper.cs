namespace GpuCnn.Models;

/// <summary>
/// PyTorch's torch.nn.utils.clip_grad_norm_(parameters, max_norm) with the L2 norm: every gradient scaled by
/// min(1, maxNorm / (‖g‖ + 1e-6)), ‖g‖ the norm of all the gradients together. On the device, without waiting
/// (<see cref="Backend.SquaredNorms"/>, <see cref="Backend.ClipCoefficient"/>, the list form of <c>Backend.ScaleBy</c>:
/// a few launches on a GPU for all the gradients); the
/// total norm can be read after (<see cref="LastTotalNorm"/>, one small download). Allocates nothing per step.
/// </summary>
public sealed class GradientClipper : IDisposable
{
    private readonly Backend _backend;
    private readonly DeviceTensor<float>[] _gradients;
    private readonly DeviceTensor<float> _sums, _coefficient;

    /// <summary>Clips the gradients of <paramref name="parameters"/> to a total L2 norm of <paramref name="maxNorm"/>.</summary>
    public GradientClipper(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters, float maxNorm)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(parameters);
        if (!float.IsFinite(maxNorm) || maxNorm <= 0f)
        {
            throw new ArgumentOutOfRangeException(nameof(maxNorm), maxNorm, string.Create(System.Globalization.CultureInfo.InvariantCulture, $"gradient clipping: the largest norm must be finite and positive, got {maxNorm}."));
        }

        _backend = backend;
        (string Key, Parameter Parameter)[] listed = [.. parameters];
        Parameter.CheckList("gradient clipping", backend, listed, nameof(parameters));
        _gradients = [.. listed.Select(p => p.Parameter.Gradient)];
        if (_gradients.Length == 0)
        {
            throw new ArgumentException("gradient clipping: there are no parameters to clip.", nameof(parameters));
        }

        MaxNorm = maxNorm;
        _sums = backend.Allocate<float>([_gradients.Length]);
        try
        {
            _coefficient = backend.AllocateFilled([2], float.NaN); // NaN: no clip yet
        }
        catch
        {
            _sums.Dispose(); // out of device memory: nothing stays allocated
            throw;
        }
    }

    /// <summary>The largest total norm the gradients keep.</summary>
    public float MaxNorm { get; }

    /// <summary>Scales every gradient so that their total L2 norm is at most <see cref="MaxNorm"/> (PyTorch's formula).</summary>
    public void Clip()
    {
        _backend.SquaredNorms(_gradients, _sums);
        _backend.ClipCoefficient(_sums, MaxNorm, _coefficient);
        _backend.ScaleBy(_gradients, _coefficient);
    }

    /// <summary>The gradients' total L2 norm before the last <see cref="Clip"/> (NaN before the first); waits for it.</summary>
    public float LastTotalNorm()
    {
        Span<float> values = stackalloc float[2];
        _backend.Download<float>(_coefficient, values);
        return values[1];
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        _sums.Dispose();
        _coefficient.Dispose();
    }
}
