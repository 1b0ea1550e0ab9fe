using KvmSharp.Cli;

namespace KvmSharp.Exec;

/// <summary>`kvmsharp exec [options] -- CMD [ARG...]`, parsed. Values are checked later, by the run options they become.</summary>
public sealed record ExecArguments(
    string? Kernel,
    string? Initrd,
    string Memory,
    string? Cpus,
    IReadOnlyList<string> Shares,
    IReadOnlyList<string> WritableDirectories,
    string? Timeout,
    IReadOnlyList<string> Command)
{
    public const string Usage = "usage: kvmsharp exec [--kernel K] [--initrd I] [--memory M] [--cpus N] [--share path=DIR,tag=TAG[,readonly=on]]... [--rw DIR]... [--timeout S] -- CMD [ARG...]";

    /// <summary>exec's default guest RAM: Debian's kernel, its modules and the tmpfs overlay need more than run's 64M.</summary>
    public const string DefaultMemory = "512M";

    /// <summary>Parse the arguments after `exec`. Throws <see cref="OptionsException"/> with a one-line reason.</summary>
    public static ExecArguments Parse(IReadOnlyList<string> args)
    {
        string? kernel = null, initrd = null, cpus = null, timeout = null;
        string memory = DefaultMemory;
        var shares = new List<string>();
        var writable = new List<string>();
        int i = 0;
        for (; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg == "--") break;
            if (arg is "-h" or "--help") throw new OptionsException(Usage);
            string flag = arg, value;
            int equals = arg.IndexOf('=');
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                flag = arg[..equals];
                value = arg[(equals + 1)..];
            }
            else
            {
                if (!IsKnown(flag)) throw Unknown(arg);
                if (i + 1 >= args.Count || args[i + 1] == "--")
                    throw new OptionsException($"exec: {flag} needs a value. {Usage}");
                value = args[++i];
            }
            switch (flag)
            {
                case "--kernel": kernel = value; break;
                case "--initrd": initrd = value; break;
                case "--memory": memory = value; break;
                case "--cpus": cpus = value; break;
                case "--timeout": timeout = value; break;
                case "--share": shares.Add(value); break;
                case "--rw": writable.Add(CheckWritableDirectory(value)); break;
                default: throw Unknown(arg);
            }
        }
        if (i >= args.Count || i + 1 >= args.Count)
            throw new OptionsException($"exec: no command; give it after --. {Usage}");
        return new ExecArguments(kernel, initrd, memory, cpus, shares, writable, timeout, args.Skip(i + 1).ToArray());
    }

    private static bool IsKnown(string flag) => flag is "--kernel" or "--initrd" or "--memory" or "--cpus" or "--timeout" or "--share" or "--rw";

    private static OptionsException Unknown(string arg) => new($"exec: unknown option '{arg}' (put the command after --). {Usage}");

    private static string CheckWritableDirectory(string value)
    {
        string full = Path.GetFullPath(value);
        if (!Directory.Exists(full)) throw new OptionsException($"exec: --rw {value}: no such directory; give an existing host directory");
        return full.Length > 1 ? full.TrimEnd('/') : full;
    }
}
