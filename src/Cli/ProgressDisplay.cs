using GpuCnn.Models;

namespace GpuCnn.Cli;

/// <summary>A progress bar on a terminal; nothing when the output is redirected (epoch lines suffice there).</summary>
internal sealed class ProgressDisplay(TextWriter error) : IProgress<TrainingProgress>, IDisposable
{
    private readonly bool _enabled = ReferenceEquals(error, Console.Error) && !Console.IsErrorRedirected;
    private int _lastWidth;
    private long _lastDraw;

    public void Report(TrainingProgress value)
    {
        long now = Environment.TickCount64;
        if (!_enabled || (now - _lastDraw < 100 && value.Batch != value.Batches))
        {
            return;
        }

        _lastDraw = now;
        const int width = 30;
        int filled = value.Batch * width / value.Batches;
        string line = $"\repoch {value.Epoch}/{value.Epochs} [{new string('#', filled)}{new string('.', width - filled)}] {value.Batch}/{value.Batches}";
        _lastWidth = line.Length;
        error.Write(line);
    }

    public void Clear()
    {
        if (_enabled && _lastWidth > 0)
        {
            error.Write("\r" + new string(' ', _lastWidth) + "\r");
            _lastWidth = 0;
        }
    }

    public void Dispose() => Clear();
}
