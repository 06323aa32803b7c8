namespace GpuCnn.Models;

/// <summary>
/// One thread at a time inside an object's guarded methods (a model, an optimizer): another thread entering is told so
/// at once, rather than interleaving with the first and corrupting what it keeps. The same thread may nest.
/// </summary>
internal sealed class ThreadUse
{
    private int _user; // the managed thread id of the thread inside a guarded method; 0: none

    /// <summary>Enters for <paramref name="method"/>, or throws <paramref name="busy"/>'s message naming it.</summary>
    public Scope Enter(string method, Func<string, string> busy)
    {
        int thread = Environment.CurrentManagedThreadId;
        int user = Interlocked.CompareExchange(ref _user, thread, 0);
        if (user != 0 && user != thread)
        {
            throw new InvalidOperationException(busy(method));
        }

        return new Scope(this, entered: user == 0);
    }

    internal readonly struct Scope(ThreadUse use, bool entered) : IDisposable
    {
        public void Dispose()
        {
            if (entered)
            {
                Volatile.Write(ref use._user, 0);
            }
        }
    }
}
