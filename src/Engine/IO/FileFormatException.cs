namespace GpuCnn.IO;

/// <summary>A file that is not what its format promises; the message names the file and the defect.</summary>
public sealed class FileFormatException : IOException
{
    /// <summary>Creates the exception.</summary>
    public FileFormatException(string message)
        : base(message)
    {
    }

    /// <summary>Creates the exception.</summary>
    public FileFormatException()
    {
    }

    /// <summary>Creates the exception.</summary>
    public FileFormatException(string message, Exception inner)
        : base(message, inner)
    {
    }
}

/// <summary>File helpers shared by the readers and writers.</summary>
public static class FileUtil
{
    /// <summary>
    /// Writes <paramref name="path"/> through a temporary file in the same folder that is flushed to disk and then
    /// renamed over the target, so a crash never leaves a half-written or clobbered file.
    /// </summary>
    public static void WriteAtomically(string path, Action<Stream> write)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(write);
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full) ?? ".";
        Directory.CreateDirectory(folder);
        string temporary = Path.Combine(folder, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }

            File.Move(temporary, full, overwrite: true);
        }
        catch
        {
            TryDelete(temporary);
            throw;
        }
    }

    /// <summary>Reads a whole file, or fails with a message naming it when it is missing.</summary>
    public static byte[] ReadAll(string path, string what, long maximumBytes = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"{what} '{path}' does not exist.", path);
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
