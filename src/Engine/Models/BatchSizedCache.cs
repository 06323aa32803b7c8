namespace GpuCnn.Models;

/// <summary>
/// Device buffers kept per batch size, for the few sizes a model meets (a training batch, the last partial one, an
/// evaluation's last): at most <see cref="Capacity"/> sizes, the least recently used freed when another size comes,
/// so that inference over varying counts does not keep a set of buffers for every count it has seen.
/// </summary>
internal sealed class BatchSizedCache<T>(Func<int, T> create, Action<T> release)
    where T : class
{
    /// <summary>The sizes kept: a training epoch with its evaluation meets three (full, last, the test set's last).</summary>
    public const int Capacity = 4;

    private readonly List<(int Batch, T Buffer, long Used)> _entries = new(Capacity);
    private long _clock;

    /// <summary>The buffer for <paramref name="batch"/>, made on first use (freeing the least recently used size when full).</summary>
    public T Get(int batch)
    {
        int oldest = 0;
        for (int i = 0; i < _entries.Count; i++)
        {
            var entry = _entries[i];
            if (entry.Batch == batch)
            {
                _entries[i] = (batch, entry.Buffer, ++_clock);
                return entry.Buffer;
            }

            oldest = entry.Used < _entries[oldest].Used ? i : oldest;
        }

        if (_entries.Count == Capacity)
        {
            release(_entries[oldest].Buffer);
            _entries.RemoveAt(oldest);
        }

        var buffer = create(batch);
        _entries.Add((batch, buffer, ++_clock));
        return buffer;
    }

    /// <summary>Frees every buffer.</summary>
    public void Clear()
    {
        foreach (var (_, buffer, _) in _entries)
        {
            release(buffer);
        }

        _entries.Clear();
    }
}
