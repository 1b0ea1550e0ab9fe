using KvmSharp.Cli;

namespace KvmSharp.Exec;

/// <summary>exec's default kernel and initrd: the ones scripts/guest/fetch-guest.sh last built, named by its cache's guest/current.env.</summary>
public static class ExecGuestFiles
{
    public const string PointerFile = "guest/current.env";

    /// <summary>Where fetch-guest.sh's cache is: $KVMSHARP_CACHE, else /var/cache/kvmsharp when it has the pointer, else ~/.cache/kvmsharp.</summary>
    public static IReadOnlyList<string> CandidatePointers(Func<string, string?> environment)
    {
        if (environment("KVMSHARP_CACHE") is { Length: > 0 } cache) return [Path.Combine(cache, PointerFile)];
        var list = new List<string> { Path.Combine("/var/cache/kvmsharp", PointerFile) };
        if (environment("HOME") is { Length: > 0 } home) list.Add(Path.Combine(home, ".cache/kvmsharp", PointerFile));
        return list;
    }

    /// <summary>KERNEL= and INITRD= of the first pointer file that exists. Throws <see cref="OptionsException"/> naming the script when there is none.</summary>
    public static (string Kernel, string Initrd) Resolve(Func<string, string?> environment)
    {
        var candidates = CandidatePointers(environment);
        foreach (string pointer in candidates)
        {
            if (!File.Exists(pointer)) continue;
            string? kernel = null, initrd = null;
            foreach (string line in File.ReadAllLines(pointer))
            {
                if (line.StartsWith("KERNEL=", StringComparison.Ordinal)) kernel = line["KERNEL=".Length..];
                else if (line.StartsWith("INITRD=", StringComparison.Ordinal)) initrd = line["INITRD=".Length..];
            }
            if (kernel is not { Length: > 0 } || initrd is not { Length: > 0 })
                throw new OptionsException($"exec: {pointer} has no KERNEL= or INITRD= line; run scripts/guest/fetch-guest.sh again (or give --kernel and --initrd)");
            return (kernel, initrd);
        }
        throw new OptionsException($"exec: no guest kernel: {string.Join(" or ", candidates)} does not exist; run scripts/guest/fetch-guest.sh first (or give --kernel and --initrd)");
    }
}
