using System.Globalization;
using System.Runtime.CompilerServices;

namespace GpuCnn.Tests.Support;

/// <summary>
/// Runs the whole suite in a culture that writes 1.5 as "1,5" (de-DE), so that any number the engine or the command
/// line reads or writes in the user's culture instead of the invariant one fails a test: a German locale had read
/// "--momentum 1.5" as 15. GPUCNN_TEST_CULTURE names another culture ("invariant" for none); a .NET without culture
/// data (globalization-invariant mode) keeps the invariant culture.
/// </summary>
internal static class TestCulture
{
    [ModuleInitializer]
    internal static void Apply()
    {
        string name = Environment.GetEnvironmentVariable("GPUCNN_TEST_CULTURE") is { Length: > 0 } chosen ? chosen : "de-DE";
        if (name == "invariant")
        {
            return;
        }

        try
        {
            // Formatting and parsing only: messages of .NET and its libraries stay in the machine's language.
            CultureInfo.DefaultThreadCurrentCulture = CultureInfo.CurrentCulture = CultureInfo.GetCultureInfo(name);
        }
        catch (CultureNotFoundException)
        {
            // No culture data here: the invariant culture stands.
        }
    }
}
