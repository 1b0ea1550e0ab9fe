using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Trackers;

namespace KvmSharp.Cli;

/// <summary>
/// Settings of `kvmsharp run`, bound from the "KvmSharp" configuration section: appsettings.json,
/// KVMSHARP__NAME environment variables, then command-line flags (highest precedence).
/// </summary>
public sealed class RunOptions
{
    public const string Section = "KvmSharp";

    /// <summary>Guest RAM, e.g. 64M or 1G (--memory).</summary>
    public string Memory { get; set; } = "64M";

    /// <summary>vCPU count (--cpus).</summary>
    public int Cpus { get; set; } = 1;

    /// <summary>A flat binary to boot instead of the built-in guest (--image), entered at <see cref="Entry"/>.</summary>
    public string? Image { get; set; }

    /// <summary>Guest-physical entry (and load) address of <see cref="Image"/> (--entry).</summary>
    public string? Entry { get; set; }

    /// <summary>CPU mode the image starts in: long (default) or real (--mode).</summary>
    public string Mode { get; set; } = "long";

    /// <summary>The KVM device (--kvm-device).</summary>
    public string KvmDevice { get; set; } = Kvm.KvmSystem.DefaultPath;

    /// <summary>Where the guest's serial console goes: "stdout" or a file path (--serial).</summary>
    public string Serial { get; set; } = "stdout";

    /// <summary>Back guest RAM with a memfd (--memfd).</summary>
    public bool Memfd { get; set; }

    /// <summary>Print exit statistics at the end of the run (--stats).</summary>
    public bool Stats { get; set; }

    /// <summary>Guest ranges whose writes the write-audit tracker reports (--track).</summary>
    public string? Track { get; set; }

    /// <summary>A Linux bzImage to boot (--kernel).</summary>
    public string? Kernel { get; set; }

    /// <summary>The initrd for <see cref="Kernel"/> (--initrd).</summary>
    public string? Initrd { get; set; }

    /// <summary>The kernel command line (--cmdline).</summary>
    public string Cmdline { get; set; } = DefaultCmdline;

    public const string DefaultCmdline = "console=ttyS0 reboot=k panic=-1";

    /// <summary>Exit 0 as soon as the console shows this text (--expect).</summary>
    public string? Expect { get; set; }

    /// <summary>Give up after this many seconds, exiting 124 with the console's tail (--timeout).</summary>
    public double? Timeout { get; set; }

    /// <summary>What a guest reboot does: exit (default) or restart (--on-reboot).</summary>
    public string OnReboot { get; set; } = "exit";

    /// <summary>Checked values, or an <see cref="OptionsException"/> naming the first bad setting.</summary>
    public ValidatedRunOptions Validate()
    {
        if (!SizeParser.TryParse(Memory, out ulong memory) || memory < (1UL << 20) || memory % (1UL << 20) != 0)
            throw new OptionsException("memory", Memory, "give a whole number of MiB such as 64M or 2G, at least 1M");
        if (Cpus < 1 || Cpus > Vmm.Machine.VmConfig.MaximumCpus)
            throw new OptionsException("cpus", Cpus.ToString(), $"give 1 to {Vmm.Machine.VmConfig.MaximumCpus}");
        CpuMode mode = Mode.ToLowerInvariant() switch
        {
            "long" => CpuMode.Long,
            "real" => CpuMode.Real,
            _ => throw new OptionsException("mode", Mode, "give long or real"),
        };
        if (Kernel is not null)
        {
            if (Image is not null) throw new OptionsException("kernel", Kernel, "give either --kernel or --image, not both");
            if (!File.Exists(Kernel)) throw new OptionsException("kernel", Kernel, "the file does not exist");
            try
            {
                Vmm.Boot.Linux.LinuxLoader.Check(Kernel);
            }
            catch (InvalidDataException e)
            {
                throw new OptionsException("kernel", Kernel, e.Message);
            }
            if (Initrd is not null && !File.Exists(Initrd)) throw new OptionsException("initrd", Initrd, "the file does not exist");
        }
        else if (Initrd is not null)
        {
            throw new OptionsException("initrd", Initrd, "--initrd only applies with --kernel");
        }
        if (Timeout is { } seconds && (seconds <= 0 || double.IsNaN(seconds) || seconds > 7 * 24 * 3600))
            throw new OptionsException("timeout", seconds.ToString(System.Globalization.CultureInfo.InvariantCulture), "give a number of seconds above 0");
        if (Expect is not null && Expect.Length == 0) throw new OptionsException("expect", "", "give the text to wait for");
        bool restartOnReboot = OnReboot.ToLowerInvariant() switch
        {
            "exit" => false,
            "restart" => true,
            _ => throw new OptionsException("on-reboot", OnReboot, "give exit or restart"),
        };
        ulong? entry = null;
        if (Image is not null)
        {
            if (!File.Exists(Image)) throw new OptionsException("image", Image, "the file does not exist");
            if (Entry is null) throw new OptionsException("entry", "(missing)", "--image needs --entry ADDR");
        }
        if (Entry is not null)
        {
            if (Image is null) throw new OptionsException("entry", Entry, "--entry only applies with --image FILE");
            if (!SizeParser.TryParseAddress(Entry, out ulong address)) throw new OptionsException("entry", Entry, "give an address such as 0x100000");
            entry = address;
        }
        IReadOnlyList<GuestRange> track = [];
        if (!string.IsNullOrWhiteSpace(Track))
        {
            try
            {
                track = GuestRange.ParseList(Track);
            }
            catch (FormatException e)
            {
                throw new OptionsException("track", Track, e.Message + "; give GPA, GPA-GPA or GPA+SIZE, comma-separated");
            }
            if (track.FirstOrDefault(r => r.End > memory) is { End: > 0 } outside)
                throw new OptionsException("track", Track, $"{outside} lies beyond guest memory ({memory >> 20} MiB)");
        }
        return new ValidatedRunOptions(memory, Cpus, Image, entry, mode, KvmDevice, Serial, Memfd, track)
        {
            Kernel = Kernel,
            Initrd = Initrd,
            Cmdline = Cmdline,
            Expect = Expect,
            Timeout = Timeout is { } t ? TimeSpan.FromSeconds(t) : null,
            RestartOnReboot = restartOnReboot,
            Stats = Stats,
        };
    }
}

public sealed record ValidatedRunOptions(ulong MemoryBytes, int Cpus, string? Image, ulong? Entry, CpuMode Mode, string KvmDevice, string Serial, bool Memfd, IReadOnlyList<GuestRange> Track)
{
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string Cmdline { get; init; } = RunOptions.DefaultCmdline;
    public string? Expect { get; init; }
    public TimeSpan? Timeout { get; init; }
    public bool RestartOnReboot { get; init; }
    public bool Stats { get; init; }
}

/// <summary>A setting has an invalid value; the message names it, its value, and what is expected.</summary>
public sealed class OptionsException(string name, string value, string expected)
    : Exception($"invalid setting {name} (--{name}, {RunOptions.Section}:{char.ToUpperInvariant(name[0])}{name[1..]}, KVMSHARP__{name.ToUpperInvariant()}): '{value}': {expected}");
