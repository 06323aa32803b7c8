using GpuCnn;
using GpuCnn.Models;

/// <summary>
/// An optimizer of the user's own, written against the package's public surface alone (Program.cs fine-tunes with it):
/// SGD with a momentum of one half through the backend's step, one buffer a parameter made with ZeroStates, saved and
/// restored by checkpoints through StateTensors, and freed with Free.
/// </summary>
internal sealed class HalfMomentumSgd : Optimizer
{
    private readonly DeviceTensor<float>[] _velocity;
    private readonly SgdOptions _options;
    private float _learningRate;

    public HalfMomentumSgd(Backend backend, IEnumerable<(string Key, Parameter Parameter)> parameters, float learningRate)
        : base(backend, parameters)
    {
        _options = new SgdOptions(learningRate, Momentum: 0.5f);
        _learningRate = Checked(learningRate);
        _velocity = ZeroStates(); // one a parameter, all freed again if the device runs out part-way
    }

    public override float LearningRate
    {
        get => _learningRate;
        set => _learningRate = Checked(value);
    }

    public override IEnumerable<(string Name, DeviceTensor<float> Tensor)> StateTensors() =>
        Parameters.Select((p, i) => ($"{p.Key}.momentum_buffer", _velocity[i]));

    // Step() calls it, refusing a second thread and a disposed optimizer, and counts the step after it.
    protected override void StepCore()
    {
        for (int i = 0; i < Values.Count; i++)
        {
            Backend.SgdUpdate(_options, StepCount == 0, Values[i], Gradients[i], _velocity[i], _learningRate);
        }
    }

    protected override void Dispose(bool disposing) => Free(_velocity);
}
