using System.Collections.Concurrent;
using System.Diagnostics;

namespace GpuCnn.Tests.Support;

/// <summary>The gpucnn CLI as a process of its own, for the tests that signal, kill or limit it.</summary>
public static class CliProcess
{
    /// <summary>
    /// The command that runs the CLI: its own launcher where the build left one (a self-contained bundle has no
    /// `dotnet` to run the dll with), else `dotnet gpucnn.dll`.
    /// </summary>
    public static string[] Command
    {
        get
        {
            string launcher = Path.Combine(AppContext.BaseDirectory, OperatingSystem.IsWindows() ? "gpucnn.exe" : "gpucnn");
            return File.Exists(launcher) ? [launcher] : ["dotnet", Path.Combine(AppContext.BaseDirectory, "gpucnn.dll")];
        }
    }

    /// <summary>
    /// Starts <paramref name="wrapper"/> + the CLI + <paramref name="args"/> with redirected output;
    /// <paramref name="environment"/> adds variables.
    /// </summary>
    public static Process Start(IEnumerable<string> wrapper, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(wrapper.First()) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string arg in wrapper.Skip(1).Concat(Command).Concat(args))
        {
            start.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        return Watched(Process.Start(start)!);
    }

    /// <summary>How long a child process may run before <see cref="Watched"/> kills it: far past any test's child.</summary>
    public static TimeSpan Deadline { get; } = TimeSpan.FromMinutes(5);

    private static readonly ConcurrentDictionary<int, Timer> s_watchdogs = new(); // keeps each timer alive until it fires or its process ends

    /// <summary>
    /// Kills <paramref name="process"/> and its children if it still runs after <see cref="Deadline"/>: a child that
    /// hangs (mpirun waiting for a rank, a deadlock) then ends the test's blocking reads and waits, and the test fails
    /// with what the child printed, rather than holding the whole run until CI's limit without a word. The process is
    /// found again by its id and start time, so a child whose Process object its test has disposed (after a failed
    /// wait) is killed too.
    /// </summary>
    public static Process Watched(Process process)
    {
        ArgumentNullException.ThrowIfNull(process);
        int id = process.Id;
        DateTime started;
        try
        {
            started = process.StartTime;
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return process; // ended already: nothing to watch
        }

        var watchdog = new Timer(_ =>
        {
            if (s_watchdogs.TryRemove(id, out var fired))
            {
                fired.Dispose();
            }

            try
            {
                using var child = Process.GetProcessById(id);
                if (child.StartTime == started && !child.HasExited)
                {
                    child.Kill(entireProcessTree: true);
                }
            }
            catch (Exception)
            {
                // gone already (no such process, or one that ended while being killed): nothing to stop
            }
        }, null, Deadline, Timeout.InfiniteTimeSpan);
        s_watchdogs[id] = watchdog;
        process.Exited += (_, _) =>
        {
            if (s_watchdogs.TryRemove(id, out var done))
            {
                done.Dispose();
            }
        };
        process.EnableRaisingEvents = true; // after the handler: an exit in between still reaches it
        return process;
    }

    /// <summary>Runs the CLI with <paramref name="args"/> and one more environment variable, to its end (a minute at most).</summary>
    public static CliRunner.Result RunWithEnvironment(string[] args, string variable, string value)
    {
        using var run = Start(["env"], args, new Dictionary<string, string> { [variable] = value });
        var output = run.StandardOutput.ReadToEndAsync();
        string error = run.StandardError.ReadToEnd();
        Assert.True(run.WaitForExit(60_000), "gpucnn did not finish");
        return new CliRunner.Result(run.ExitCode, output.Result, error);
    }
}
