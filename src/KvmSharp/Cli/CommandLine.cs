namespace KvmSharp.Cli;

/// <summary>
/// Splits `kvmsharp VERB [--flag value | --switch]...` into a verb and configuration keys under
/// <see cref="RunOptions.Section"/>, so flags override appsettings.json and environment variables.
/// </summary>
public sealed record CommandLine(string Verb, IReadOnlyDictionary<string, string?> Settings)
{
    private static readonly Dictionary<string, string> ValueFlags = new(StringComparer.Ordinal)
    {
        ["--memory"] = "Memory",
        ["--cpus"] = "Cpus",
        ["--image"] = "Image",
        ["--entry"] = "Entry",
        ["--mode"] = "Mode",
        ["--kvm-device"] = "KvmDevice",
        ["--serial"] = "Serial",
        ["--track"] = "Track",
        ["--kernel"] = "Kernel",
        ["--initrd"] = "Initrd",
        ["--cmdline"] = "Cmdline",
        ["--expect"] = "Expect",
        ["--timeout"] = "Timeout",
        ["--on-reboot"] = "OnReboot",
    };

    private static readonly Dictionary<string, string> SwitchFlags = new(StringComparer.Ordinal)
    {
        ["--memfd"] = "Memfd",
        ["--stats"] = "Stats",
    };

    public static readonly string[] Verbs = ["run", "caps", "help"];

    /// <summary>Parse; throws <see cref="ArgumentException"/> naming an unknown verb or flag, or a flag missing its value.</summary>
    public static CommandLine Parse(IReadOnlyList<string> args)
    {
        // The verb may be left out: `kvmsharp --memory 128M` means `kvmsharp run --memory 128M`.
        bool verbGiven = args.Count > 0 && !args[0].StartsWith('-');
        string verb = verbGiven ? args[0] : args.Count > 0 && args[0] is "-h" or "--help" ? "help" : "run";
        if (!Verbs.Contains(verb)) throw new ArgumentException($"unknown command '{verb}'; commands: {string.Join(", ", Verbs)}");

        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        for (int i = verbGiven ? 1 : 0; i < args.Count; i++)
        {
            string arg = args[i];
            string? inlineValue = null;
            int equals = arg.IndexOf('=');
            if (arg.StartsWith("--", StringComparison.Ordinal) && equals > 0)
            {
                inlineValue = arg[(equals + 1)..];
                arg = arg[..equals];
            }
            if (ValueFlags.TryGetValue(arg, out string? key))
            {
                // A following flag is not a value (`--memory --cpus 2`); `--flag=--x` still passes one.
                string? value = inlineValue ?? (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : null);
                if (value is null) throw new ArgumentException($"{arg} needs a value");
                settings[$"{RunOptions.Section}:{key}"] = value;
            }
            else if (SwitchFlags.TryGetValue(arg, out key))
            {
                settings[$"{RunOptions.Section}:{key}"] = inlineValue ?? "true";
            }
            else if (arg is "-h" or "--help")
            {
                return new CommandLine("help", settings);
            }
            else
            {
                throw new ArgumentException($"unknown option '{args[i]}' for '{verb}'; see 'kvmsharp help'");
            }
        }
        return new CommandLine(verb, settings);
    }

    public const string Usage = """
        usage: kvmsharp [run] [options]      boot a guest (the built-in one when no --image is given)
               kvmsharp caps [--kvm-device PATH]   print this host's KVM facts
               kvmsharp help

        run options (also KvmSharp:NAME in appsettings.json, or KVMSHARP__NAME in the environment):
          --memory SIZE        guest RAM, e.g. 64M, 2G (default 64M)
          --cpus N             vCPUs (default 1)
          --image FILE         flat binary to boot instead of the built-in guest
          --entry ADDR         load and entry address of --image, e.g. 0x100000
          --mode long|real     CPU mode the image starts in (default long)
          --kernel BZIMAGE     boot Linux through the 64-bit boot protocol (in-kernel irqchip, PIT,
                               16550 on IRQ 4, i8042, CMOS RTC, MP table for --cpus)
          --initrd FILE        initrd for --kernel
          --cmdline TEXT       kernel command line (default "console=ttyS0 reboot=k panic=-1")
          --on-reboot exit|restart   what a guest reboot does (default exit, status 0)
          --expect TEXT        exit 0 as soon as the console shows TEXT (CI boot tests)
          --timeout SECONDS    give up after SECONDS: exit 124 with the console's tail
          --serial stdout|FILE where the guest's serial console goes (default stdout)
          --memfd              back guest RAM with a memfd
          --stats              print exit statistics (per exit reason, port and MMIO range) at the end
          --track RANGES       audit guest writes to these ranges: GPA, GPA-GPA (end exclusive) or
                               GPA+SIZE, comma-separated; e.g. --track 0x180000-0x188000 shows the
                               built-in guest's pattern writes
          --kvm-device PATH    KVM device (default /dev/kvm)

        The exit status is the guest's (the byte it writes to debug-exit port 0x501); 70 means a
        KvmSharp error, 71 a guest fault (triple fault, KVM entry failure), 2 invalid settings;
        with --expect: 0 when the text appears, 124 on timeout, 1 (or the fault's code) when the
        guest ends first.
        """;
}
