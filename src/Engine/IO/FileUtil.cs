namespace GpuCnn.IO;

/// <summary>File helpers shared by the readers and writers.</summary>
internal static class FileUtil
{
    /// <summary>
    /// Writes <paramref name="path"/> through a temporary file in the same folder that is flushed to disk and then
    /// renamed over the target, so a crash never leaves a half-written or clobbered file.
    /// </summary>
    /// <remarks>
    /// A symbolic link is written through, as open(2) would: the file it finally points to is replaced and the link
    /// stays (renaming over the link itself would turn it into a file and leave its target old).
    /// Temporaries that a killed process left for the same file (named after a process that no longer runs) are
    /// deleted first. <c>GPUCNN_TEST_PAUSE_IN_WRITE_MS</c> holds every write that long between writing its temporary
    /// and renaming it (the crash tests kill processes inside that window).
    /// </remarks>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        RequireFileTarget(path, Path.GetFullPath(path)); // statx follows links: /dev/stdout on a pipe is refused as a pipe
        string full = ThroughLinks(path, Path.GetFullPath(path));
        RequireFileTarget(path, full);
        string folder = Path.GetDirectoryName(full) ?? ".";
        Directory.CreateDirectory(folder);
        DeleteStaleTemporaries(full);
        string temporary = TemporaryFor(full, Environment.ProcessId);
        try
        {
            try
            {
                using var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            catch (ArgumentOutOfRangeException e) when (e.ParamName == "value")
            {
                // .NET reports EFBIG (past the file-size limit) from a file write as this; it is an I/O failure.
                throw new IOException("File too large", e);
            }

            if (int.TryParse(Environment.GetEnvironmentVariable("GPUCNN_TEST_PAUSE_IN_WRITE_MS"), out int pause) && pause > 0)
            {
                Thread.Sleep(pause);
            }

            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }

        SyncFolder(folder);
    }

    /// <summary>
    /// Flushes the folder's entry for the renamed file to disk (POSIX: the rename is durable only once its directory
    /// is synced, so a power cut right after cannot bring back the old file or none). Best effort; not on Windows.
    /// </summary>
    private static void SyncFolder(string folder)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        try
        {
            int descriptor = NativeMethods.Open(System.Text.Encoding.UTF8.GetBytes(folder + "\0"), 0); // O_RDONLY
            if (descriptor >= 0)
            {
                _ = NativeMethods.Fsync(descriptor);
                _ = NativeMethods.Close(descriptor);
            }
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            // No libc by that name (an unusual platform): the file itself was flushed; only the rename's durability is weaker.
        }
    }

    /// <summary>
    /// A file's float64 value as float32; a finite one past float32's range (±3.4e38) is a format error naming element
    /// <paramref name="index"/> of <paramref name="where"/>, never a silent ±∞ (a true ±∞ or NaN stays itself).
    /// </summary>
    public static float ToFloat32(double value, int index, string where) =>
        (float)value is var narrowed && float.IsInfinity(narrowed) && double.IsFinite(value)
            ? throw new FileFormatException(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{where}: element {index} is {value:R}, beyond float32's range (±3.4e38)."))
            : narrowed;

    /// <summary>
    /// Refuses a target that a file renamed over it would wrongly replace, or that names no file: a path ending in a
    /// separator (its folder would be made, then the rename fail after all the work), and an existing device, pipe or
    /// socket (renaming over /dev/null as root replaces the device with a file).
    /// </summary>
    private static void RequireFileTarget(string path, string full)
    {
        if (Path.EndsInDirectorySeparator(path))
        {
            throw new IOException($"'{path}' ends in a separator: it names a folder, not a file.");
        }

        if (IsSpecialFile(full))
        {
            throw new IOException($"'{path}' is a device, pipe or socket, not a file; the output is written as a file renamed into place.");
        }
    }

    /// <summary>
    /// The file that <paramref name="full"/> finally names: every symbolic link on the way resolved on disk (realpath(3)
    /// of what exists: a relative target's ".." is taken from where the link really lies, not from the path as written,
    /// which .NET would cancel against the folder before it), and a last link to a file not made yet followed to it.
    /// </summary>
    private static string ThroughLinks(string path, string full)
    {
        for (int hop = 0; hop <= 40; hop++)
        {
            full = RealPath(full);
            string? target;
            try
            {
                target = new FileInfo(full).LinkTarget;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new IOException($"'{path}' is a symbolic link that cannot be followed: {Reason(e)}.", e);
            }

            if (target is null)
            {
                return full;
            }

            // A link that realpath left standing names nothing yet (or loops): go on from its target.
            full = Path.Combine(Path.GetDirectoryName(full) ?? ".", target);
        }

        throw new IOException($"'{path}' is a symbolic link that cannot be followed: Too many levels of symbolic links.");
    }

    /// <summary>
    /// realpath(3) of the longest part of <paramref name="full"/> that resolves, with the rest appended as written; the
    /// path itself on Windows and where libc has no realpath.
    /// </summary>
    private static string RealPath(string full)
    {
        if (OperatingSystem.IsWindows())
        {
            return full;
        }

        string existing = full, rest = "";
        while (true)
        {
            try
            {
                nint resolved = NativeMethods.RealPath(System.Text.Encoding.UTF8.GetBytes(existing + "\0"), 0);
                if (resolved != 0)
                {
                    string real = System.Runtime.InteropServices.Marshal.PtrToStringUTF8(resolved)!;
                    NativeMethods.Free(resolved);
                    return rest.Length == 0 ? real : Path.Join(real, rest);
                }
            }
            catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
            {
                return full;
            }

            string? parent = Path.GetDirectoryName(existing);
            if (parent is null)
            {
                return full;
            }

            rest = rest.Length == 0 ? Path.GetFileName(existing) : Path.Join(Path.GetFileName(existing), rest);
            existing = parent;
        }
    }

    /// <summary>
    /// Whether <paramref name="full"/> exists as something other than a regular file or a folder, links followed
    /// (statx(2): one layout on every Linux architecture; false elsewhere, and when it does not exist).
    /// </summary>
    private static bool IsSpecialFile(string full)
    {
        if (!OperatingSystem.IsLinux())
        {
            return false;
        }

        try
        {
            var buffer = new byte[256]; // struct statx
            const int CurrentFolder = -100; // AT_FDCWD (the path is absolute anyway)
            const uint TypeField = 1; // STATX_TYPE
            if (NativeMethods.Statx(CurrentFolder, System.Text.Encoding.UTF8.GetBytes(full + "\0"), 0, TypeField, buffer) != 0)
            {
                return false; // absent, or not reachable: the write itself says why
            }

            int type = System.Runtime.InteropServices.MemoryMarshal.Read<ushort>(buffer.AsSpan(28)) & 0xF000; // stx_mode's S_IFMT bits
            return type is not (0x8000 or 0x4000); // S_IFREG, S_IFDIR
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return false; // a libc without statx (before glibc 2.28)
        }
    }

    /// <summary>
    /// Checks, without writing it, that <paramref name="path"/> can be written: its folder exists or is created, and a
    /// file can be created (and is removed again) in it. Throws an <see cref="IOException"/> saying why not.
    /// </summary>
    public static void RequireWritable(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        RequireFileTarget(path, Path.GetFullPath(path));
        string full = ThroughLinks(path, Path.GetFullPath(path));
        if (Directory.Exists(full))
        {
            throw new IOException($"'{path}' is a folder, not a file.");
        }

        RequireFileTarget(path, full);

        string folder = Path.GetDirectoryName(full) ?? ".";
        try
        {
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"its folder '{folder}' cannot be created: {Reason(e)}.", e);
        }

        string probe = TemporaryFor(full, Environment.ProcessId);
        try
        {
            new FileStream(probe, FileMode.CreateNew, FileAccess.Write, FileShare.None).Dispose();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"no file can be created in '{folder}': {Reason(e)}.", e);
        }

        TryDelete(probe);
    }

    /// <summary>
    /// The operating system's reason in an I/O exception, without the path .NET appends (which may name one of our
    /// temporaries): "Permission denied", "No space left on device", "File too large".
    /// </summary>
    public static string Reason(Exception e)
    {
        ArgumentNullException.ThrowIfNull(e);
        string message = e.Message;
        int path = message.IndexOf(" : '", StringComparison.Ordinal);
        return e switch
        {
            UnauthorizedAccessException => "Permission denied",
            DirectoryNotFoundException => "a folder on the way does not exist",
            FileNotFoundException => "No such file or directory",
            _ when path > 0 => message[..path],
            _ => message,
        };
    }

    /// <summary>".{name}.{pid}.{random}.tmp" beside the target: one process's temporary for it.</summary>
    private static string TemporaryFor(string full, int processId) =>
        Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{processId}.{Guid.NewGuid():N}.tmp");

    /// <summary>Deletes temporaries of <paramref name="full"/> whose writing process no longer runs (a crash or kill left them).</summary>
    private static void DeleteStaleTemporaries(string full)
    {
        string folder = Path.GetDirectoryName(full) ?? ".", prefix = $".{Path.GetFileName(full)}.";
        IEnumerable<string> candidates;
        try
        {
            candidates = Directory.EnumerateFiles(folder, prefix + "*.tmp").ToList();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return; // the write itself will say what is wrong with the folder
        }

        foreach (string candidate in candidates)
        {
            string[] parts = Path.GetFileName(candidate)[prefix.Length..].Split('.');
            if (parts.Length == 3 && int.TryParse(parts[0], out int pid) && pid != Environment.ProcessId && !IsRunning(pid))
            {
                TryDelete(candidate);
            }
        }
    }

    private static bool IsRunning(int processId)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(processId);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false; // no such process
        }
        catch (InvalidOperationException)
        {
            return false;
        }
    }

    /// <summary>Reads a whole file, or fails with a message naming it when it is missing.</summary>
    public static byte[] ReadAll(string path, string what, long maximumBytes = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw Directory.Exists(path) ? new IOException($"{what} '{path}' is a folder, not a file.")
                : new FileNotFoundException($"{what} '{path}' does not exist.", path);
        }

        long length = new FileInfo(path).Length;
        if (length > maximumBytes)
        {
            throw new FileFormatException($"{what} '{path}' is {length} bytes, more than the {maximumBytes} this reader accepts.");
        }

        return File.ReadAllBytes(path);
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: the temporary file is ours and harmless.
        }
        catch (UnauthorizedAccessException)
        {
            // As above.
        }
    }
}

/// <summary>The libc calls the file helpers need: syncing a folder (.NET opens no directory as a file), a file's type, and real paths.</summary>
internal static class NativeMethods
{
    /// <summary>open(2) on a NUL-terminated UTF-8 path.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "open")]
    internal static extern int Open(byte[] path, int flags);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "fsync")]
    internal static extern int Fsync(int descriptor);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "close")]
    internal static extern int Close(int descriptor);

    /// <summary>realpath(3) of a NUL-terminated UTF-8 path: a string malloc made (free it with <see cref="Free"/>), or 0.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "realpath")]
    internal static extern nint RealPath(byte[] path, nint resolved);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "free")]
    internal static extern void Free(nint pointer);

    /// <summary>statx(2) on a NUL-terminated UTF-8 path into a 256-byte struct statx.</summary>
    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "statx")]
    internal static extern int Statx(int folder, byte[] path, int flags, uint mask, byte[] buffer);
}
