using System.Diagnostics;

namespace GpuCnn.Models;

/// <summary>
/// One layer's share of a training step (<see cref="StepProfiler"/>): medians over the timed steps, in milliseconds.
/// </summary>
/// <param name="Name">The layer's state-dict prefix: "3", or "3.body.0" for a layer inside a residual block.</param>
/// <param name="Spec">The layer as written in the spec.</param>
/// <param name="Depth">0 for the model's own layers, 1 inside a block, and so on; a block's time includes its layers'.</param>
/// <param name="OutputShape">The per-sample output shape.</param>
/// <param name="FusedIntoPrevious">An activation that the layer before applies as it stores (its own forward does nothing).</param>
/// <param name="ForwardMs">The forward pass.</param>
/// <param name="BackwardMs">The backward pass (parameter gradients, and the input gradient where the layer before needs it).</param>
public sealed record LayerTime(string Name, string Spec, int Depth, Shape OutputShape, bool FusedIntoPrevious, double ForwardMs, double BackwardMs)
{
    /// <summary>Forward and backward together.</summary>
    public double TotalMs => ForwardMs + BackwardMs;
}

/// <summary>
/// Where a training step's time goes, layer by layer (<see cref="StepProfiler.Run"/>), or an inference pass's
/// (<see cref="StepProfiler.RunInference"/>: forward passes only, so backward, loss and update are 0).
/// </summary>
/// <param name="Training">A training step (forward, loss, backward, update) rather than an inference pass.</param>
/// <param name="BatchSize">Samples per step.</param>
/// <param name="Steps">Steps timed (after the warm-up steps), each way.</param>
/// <param name="Layers">Every layer in model order, the layers inside residual blocks after their block.</param>
/// <param name="LossMs">Softmax cross-entropy and its gradient (median).</param>
/// <param name="UpdateMs">The optimizer's step (median).</param>
/// <param name="StepMs">
/// A whole step as training (or inference) runs it, without the synchronisation after every layer (median): what the
/// rows add up to, less the waits the profiling itself adds on a GPU, plus the model's input normalisation
/// (<see cref="Sequential.Normalization"/>), which runs before the first layer and has no row.
/// </param>
public sealed record StepProfile(bool Training, int BatchSize, int Steps, IReadOnlyList<LayerTime> Layers, double LossMs, double UpdateMs, double StepMs)
{
    /// <summary>The model's own layers, the loss and the update, summed: the step (or pass) as the profile saw it.</summary>
    public double ProfiledMs => Layers.Where(l => l.Depth == 0).Sum(l => l.TotalMs) + LossMs + UpdateMs;
}

/// <summary>
/// Times a training step layer by layer, as PyTorch's profiler does by operator: the backend is synchronised before and
/// after each layer's forward and backward, so that a GPU's asynchronous launches are charged to the layer that made
/// them. The steps train the model on the batch as <see cref="Trainer"/> would, in the mode the model is in: the
/// optimizer changes the weights and its own state, and batch norm its running statistics (profile a model you can
/// spare; a learning rate of zero keeps the weights).
/// </summary>
public static class StepProfiler
{
    /// <summary>
    /// The least time the warm-up lasts unless told otherwise: .NET compiles a method at full optimisation only after 30
    /// calls and a 100 ms pause in new compilations, so a profile of a few milliseconds a step timed code that training
    /// leaves behind in its first second (LeNet-5 at batch 64 on the CPU, 2 warm-up steps: 1.09–1.31× the time with
    /// tiered compilation off; docs/benchmarks.md, twenty-first session). A floor: a longer warm-up runs as long.
    /// </summary>
    public static TimeSpan DefaultWarmupTime { get; } = TimeSpan.FromSeconds(0.5);

    /// <summary>
    /// Runs whole steps on <paramref name="images"/> (N, input…) and <paramref name="labels"/> (N), each followed by a
    /// step with every layer timed: warm-up pairs until at least <paramref name="warmupSteps"/> have run and
    /// <paramref name="warmupTime"/> (default <see cref="DefaultWarmupTime"/>) has passed, then
    /// <paramref name="steps"/> pairs timed; returns the medians.
    /// </summary>
    public static StepProfile Run(Sequential model, Optimizer optimizer, DeviceTensor<float> images, DeviceTensor<int> labels,
        int steps = 10, int warmupSteps = 2, TimeSpan? warmupTime = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(optimizer);
        ArgumentNullException.ThrowIfNull(images);
        ArgumentNullException.ThrowIfNull(labels);
        using var use = model.Use("StepProfiler.Run");
        using var stepping = optimizer.Use("StepProfiler.Run");
        optimizer.ThrowIfDisposed("StepProfiler.Run");
        optimizer.CheckUpdates(model, "StepProfiler.Run"); // as Trainer: another model's optimizer would step that model
        CheckSteps(steps, warmupSteps, warmupTime);

        int batch = images.Shape.Rank > 0 ? images.Shape[0] : 0;
        if (labels.Shape.Rank != 1 || labels.Shape[0] != batch)
        {
            throw new ArgumentException($"StepProfiler: labels have shape {labels.Shape}, the images a batch of {batch}: expected ({batch}).", nameof(labels));
        }

        var backend = model.Backend;
        Checks.Labels("StepProfiler", backend.DownloadArray(labels), model.Classes); // as Fit checks its data's (a GPU would give NaN)
        using var dlogits = backend.Allocate<float>([batch, model.Classes]);
        using var loss = backend.Allocate<float>([1]);
        var timer = new LayerTimer(backend);
        var stepTimes = new List<double>(steps);
        var lossTimes = new List<double>(steps);
        var updateTimes = new List<double>(steps);

        // A whole step and a layer-timed one alternate, so that both see the same machine: timed one after the other,
        // the whole steps ran while .NET was still compiling methods at full optimisation in the background (it does
        // after 30 calls) and read 10–26 % above the layers' sum for ResNet-8 on the CPU; with tiered compilation
        // off, 97–99 % (docs/benchmarks.md, twenty-first session).
        var counter = new StepCounter(steps, warmupSteps, warmupTime ?? DefaultWarmupTime);
        try
        {
            model.AttachTimer(timer); // once: the whole steps pass through it untimed
            while (counter.Next())
            {
                bool record = counter.Recording;
                timer.Timing = false;
                long start = Stopwatch.GetTimestamp();
                var logits = model.Forward(images);
                backend.SoftmaxCrossEntropy(logits, labels, dlogits, loss);
                model.Backward(dlogits);
                optimizer.Step();
                backend.Synchronize();
                Record(stepTimes, record, start);

                (timer.Timing, timer.Recording) = (true, record);
                logits = model.Forward(images);
                backend.Synchronize();
                start = Stopwatch.GetTimestamp();
                backend.SoftmaxCrossEntropy(logits, labels, dlogits, loss);
                backend.Synchronize();
                Record(lossTimes, record, start);
                model.Backward(dlogits);
                start = Stopwatch.GetTimestamp();
                optimizer.Step();
                backend.Synchronize();
                Record(updateTimes, record, start);
            }
        }
        finally
        {
            model.AttachTimer(null);
            model.ForgetForward();
        }

        return new StepProfile(true, batch, steps, Rows(timer), Median(lossTimes), Median(updateTimes), Median(stepTimes));
    }

    /// <summary>
    /// Times inference layer by layer: the model in evaluation mode (as <see cref="Sequential.Predict"/> runs it; its
    /// mode is restored after), whole forward passes over <paramref name="images"/> (N, input…), each followed by a pass
    /// with every layer timed, warmed up as <see cref="Run"/> does. Nothing is changed.
    /// </summary>
    public static StepProfile RunInference(Sequential model, DeviceTensor<float> images, int steps = 10, int warmupSteps = 2,
        TimeSpan? warmupTime = null)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(images);
        using var use = model.Use("StepProfiler.RunInference");
        CheckSteps(steps, warmupSteps, warmupTime);

        var backend = model.Backend;
        var timer = new LayerTimer(backend);
        var passTimes = new List<double>(steps);
        bool training = model.Training;
        model.Eval();
        var counter = new StepCounter(steps, warmupSteps, warmupTime ?? DefaultWarmupTime);
        try
        {
            model.AttachTimer(timer);
            while (counter.Next())
            {
                timer.Timing = false;
                long start = Stopwatch.GetTimestamp();
                model.Forward(images);
                backend.Synchronize();
                Record(passTimes, counter.Recording, start);

                (timer.Timing, timer.Recording) = (true, counter.Recording);
                model.Forward(images);
            }
        }
        finally
        {
            model.AttachTimer(null);
            model.ForgetForward();
            if (training)
            {
                model.Train();
            }
        }

        return new StepProfile(false, images.Shape[0], steps, Rows(timer), 0, 0, Median(passTimes));
    }

    /// <summary>
    /// Counts the profile's steps: warm-up until <c>warmupSteps</c> have run and <c>warmupTime</c> has passed (both only
    /// grow, so once recording, it stays so), then <c>steps</c> recorded.
    /// </summary>
    private sealed class StepCounter(int steps, int warmupSteps, TimeSpan warmupTime)
    {
        private readonly long _start = Stopwatch.GetTimestamp();
        private int _run, _recorded;

        /// <summary>Whether the step <see cref="Next"/> began is timed.</summary>
        public bool Recording { get; private set; }

        /// <summary>Begins the next step; false when all <c>steps</c> have been recorded.</summary>
        public bool Next()
        {
            if (_recorded == steps)
            {
                return false;
            }

            Recording = _run >= warmupSteps && Stopwatch.GetElapsedTime(_start) >= warmupTime;
            _run++;
            _recorded += Recording ? 1 : 0;
            return true;
        }
    }

    private static void CheckSteps(int steps, int warmupSteps, TimeSpan? warmupTime)
    {
        Checks.Positive("StepProfiler", nameof(steps), steps);
        if (warmupSteps < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(warmupSteps), warmupSteps, "StepProfiler: warmupSteps must be ≥ 0.");
        }

        if (warmupTime < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(warmupTime), warmupTime, "StepProfiler: warmupTime must be ≥ 0.");
        }
    }

    /// <summary>A row per layer the timer saw, with the medians of its forward and backward passes (0 for none).</summary>
    private static List<LayerTime> Rows(LayerTimer timer) =>
        [.. timer.Entries.Select(e => new LayerTime(e.Name, e.Layer.Spec, e.Depth, e.Layer.OutputShape,
            e.Layer is ActivationLayer { FusedIntoPrevious: true }, Median(e.Forward), Median(e.Backward)))];

    private static void Record(List<double> times, bool record, long start)
    {
        if (record)
        {
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
    }

    /// <summary>The median (of the middle two, for an even count); 0 for none. `gpucnn bench`'s rows take it too.</summary>
    internal static double Median(IEnumerable<double> times)
    {
        var sorted = times.Order().ToList();
        if (sorted.Count == 0)
        {
            return 0;
        }

        int half = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[half] : (sorted[half - 1] + sorted[half]) / 2;
    }
}

/// <summary>
/// What <see cref="StepProfiler"/> hangs on a model's layer chains: each layer's forward and backward between two
/// synchronisations, in order of first appearance (a block before the layers inside it).
/// </summary>
internal sealed class LayerTimer(Backend backend)
{
    private readonly Dictionary<string, Entry> _byName = new(StringComparer.Ordinal);
    private int _depth;

    /// <summary>Whether calls are recorded (off during warm-up).</summary>
    public bool Recording { get; set; }

    /// <summary>
    /// Whether the layers are timed, each between two synchronisations; off, they run straight through, as without a
    /// timer (the profile's whole steps: attached once, nothing is rebuilt between steps).
    /// </summary>
    public bool Timing { get; set; } = true;

    /// <summary>Every layer seen, in order of its first forward.</summary>
    public List<Entry> Entries { get; } = [];

    public DeviceTensor<float> Forward(Layer layer, string name, DeviceTensor<float> x)
    {
        if (!Timing)
        {
            return layer.Forward(x);
        }

        var entry = For(layer, name);
        backend.Synchronize();
        long start = Stopwatch.GetTimestamp();
        _depth++;
        try
        {
            var y = layer.Forward(x);
            backend.Synchronize();
            Add(entry.Forward, start);
            return y;
        }
        finally
        {
            _depth--;
        }
    }

    public DeviceTensor<float>? Backward(Layer layer, string name, DeviceTensor<float> dy, bool needInputGradient)
    {
        if (!Timing)
        {
            return layer.Backward(dy, needInputGradient);
        }

        var entry = For(layer, name);
        backend.Synchronize();
        long start = Stopwatch.GetTimestamp();
        _depth++;
        try
        {
            var dx = layer.Backward(dy, needInputGradient);
            backend.Synchronize();
            Add(entry.Backward, start);
            return dx;
        }
        finally
        {
            _depth--;
        }
    }

    private void Add(List<double> times, long start)
    {
        if (Recording)
        {
            times.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        }
    }

    private Entry For(Layer layer, string name)
    {
        if (!_byName.TryGetValue(name, out var entry))
        {
            entry = new Entry(name, layer, _depth);
            _byName[name] = entry;
            Entries.Add(entry);
        }

        return entry;
    }

    internal sealed record Entry(string Name, Layer Layer, int Depth)
    {
        public List<double> Forward { get; } = [];

        public List<double> Backward { get; } = [];
    }
}
