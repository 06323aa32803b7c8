using System.Reflection;
using System.Runtime.CompilerServices;

namespace GpuCnn.Tests;

/// <summary>
/// The public surface of each package, held against the listing committed in PublicApi/ so that it cannot drift
/// unnoticed: a change fails here with the lines that differ. After a deliberate change, run the tests with
/// GPUCNN_UPDATE_PUBLIC_API=1 to rewrite the listings, and review their diff with the change.
/// </summary>
public sealed class PublicApiTests
{
    public static TheoryData<string> Assemblies => new("GpuCnn.Kernels", "GpuCnn.Engine", "GpuCnn.Engine.Cpu", "GpuCnn.Devices");

    [Theory]
    [MemberData(nameof(Assemblies))]
    public void Public_surface_matches_the_committed_listing(string assemblyName)
    {
        var assembly = Assembly.Load(assemblyName);
        string[] actual = Listing(assembly);
        // The listing beside the test's source (to update it), else the copy built beside the test executable.
        string source = Path.Combine(SourceFolder(), "PublicApi", assemblyName + ".txt");
        string file = File.Exists(source) ? source : Path.Combine(AppContext.BaseDirectory, "PublicApi", assemblyName + ".txt");
        if (Environment.GetEnvironmentVariable("GPUCNN_UPDATE_PUBLIC_API") == "1")
        {
            Directory.CreateDirectory(Path.GetDirectoryName(source)!);
            File.WriteAllLines(source, actual);
            file = source;
        }

        string[] expected = File.ReadAllLines(file);
        var added = actual.Except(expected).ToList();
        var removed = expected.Except(actual).ToList();
        Assert.True(added.Count == 0 && removed.Count == 0,
            $"{assemblyName}'s public surface changed ({file}):\n" + string.Join("\n", added.Select(l => "+ " + l).Concat(removed.Select(l => "- " + l))) +
            "\nIf that is meant, rerun with GPUCNN_UPDATE_PUBLIC_API=1 and commit the listing.");
    }

    /// <summary>Every public type with its public and protected members, one line each, sorted.</summary>
    private static string[] Listing(Assembly assembly)
    {
        const BindingFlags members = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
        var lines = new List<string>();
        foreach (var type in assembly.GetExportedTypes())
        {
            string name = type.FullName!;
            string bases = string.Join(", ", new[] { type.BaseType }.Concat(type.GetInterfaces())
                .Where(t => t is not null && t != typeof(object) && t != typeof(ValueType) && (t.IsPublic || t.IsNestedPublic)).Select(t => t!.ToString()).Order(StringComparer.Ordinal));
            lines.Add($"{Kind(type)} {name}{(bases.Length > 0 ? " : " + bases : "")}");
            foreach (var member in type.GetMembers(members).Where(Visible))
            {
                if (member is MethodInfo { IsSpecialName: true } || member.GetCustomAttribute<CompilerGeneratedAttribute>() is not null)
                {
                    continue; // property and event accessors are listed with their property or event
                }

                lines.Add($"{name}::{member.MemberType} {Modifiers(member)}{member}{Accessors(member)}");
            }
        }

        return [.. lines.Order(StringComparer.Ordinal)];
    }

    /// <summary>
    /// "protected " and "static " where they apply (a member's own text shows neither): a public member made protected,
    /// or an instance member made static or back — a break for code compiled against the package — is a change.
    /// </summary>
    private static string Modifiers(MemberInfo member)
    {
        MethodBase? method = member switch
        {
            MethodBase m => m,
            PropertyInfo p => p.GetAccessors(nonPublic: true).FirstOrDefault(a => a.IsPublic || a.IsFamily || a.IsFamilyOrAssembly),
            EventInfo e => e.AddMethod,
            _ => null,
        };
        bool isProtected = method is { IsPublic: false } || member is FieldInfo { IsPublic: false };
        bool isStatic = method?.IsStatic ?? member is FieldInfo { IsStatic: true };
        return (isProtected ? "protected " : "") + (isStatic ? "static " : "");
    }

    private static bool Visible(MemberInfo member) => member switch
    {
        MethodBase m => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly,
        FieldInfo f => f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly,
        PropertyInfo p => p.GetAccessors(nonPublic: true).Any(a => a.IsPublic || a.IsFamily || a.IsFamilyOrAssembly),
        EventInfo e => e.AddMethod is { } add && (add.IsPublic || add.IsFamily),
        Type t => t.IsNestedPublic || t.IsNestedFamily,
        _ => false,
    };

    /// <summary>A property's visible accessors (" { get; protected set; }"): a setter made public or taken away is a change.</summary>
    private static string Accessors(MemberInfo member)
    {
        if (member is not PropertyInfo property)
        {
            return "";
        }

        static string Accessor(MethodInfo? accessor, string name) => accessor switch
        {
            { IsPublic: true } => $" {name};",
            { IsFamily: true } or { IsFamilyOrAssembly: true } => $" protected {name};",
            _ => "",
        };

        bool init = property.SetMethod?.ReturnParameter.GetRequiredCustomModifiers().Any(m => m.Name == "IsExternalInit") == true;
        return $" {{{Accessor(property.GetMethod, "get")}{Accessor(property.SetMethod, init ? "init" : "set")} }}";
    }

    private static string Kind(Type type) =>
        type.IsEnum ? "enum" : type.IsInterface ? "interface" : type.IsValueType ? "struct" : type.IsAbstract && type.IsSealed ? "static class" : "class";

    private static string SourceFolder([CallerFilePath] string path = "") => Path.GetDirectoryName(path)!;
}
