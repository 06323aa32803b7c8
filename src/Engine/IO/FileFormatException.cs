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
