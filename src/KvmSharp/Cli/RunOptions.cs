using System.Globalization;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Guests;
using KvmSharp.Vmm.Trackers;

namespace KvmSharp.Cli;

/// <summary>
/// Settings of `kvmsharp run` as the user wrote them, bound from the "KvmSharp" configuration section
/// (settings files, KVMSHARP__NAME environment variables, then flags) by the configuration-binding
/// source generator. Every value is a string, so binding never fails: <see cref="Validate(ulong?)"/>
/// turns them into <see cref="ValidatedRunOptions"/> or names the first bad one.
/// </summary>
public sealed class RunOptions
{
    public const string Section = "KvmSharp";
    public const string DefaultCmdline = "console=ttyS0 reboot=k panic=-1";

    /// <summary>The most guest RAM KvmSharp lays out, even with --force-memory.</summary>
    public const ulong MaximumMemory = 1UL << 40;

    /// <summary>
    /// The longest command line when the kernel names no limit (a PVH vmlinux: x86 Linux keeps 2047
    /// bytes) or names one beyond the space KvmSharp sets aside for it at 0x20000 (64 KiB).
    /// </summary>
    public const int PvhCommandLineLimit = 2047, CommandLineSpace = 0xFFFF;

    public string? Memory { get; set; }
    public string? ForceMemory { get; set; }
    public string? Cpus { get; set; }
    public string? Image { get; set; }
    public string? Entry { get; set; }
    public string? Mode { get; set; }
    public string? KvmDevice { get; set; }
    public string? Serial { get; set; }
    public string? Memfd { get; set; }
    public string? Stats { get; set; }
    public string? Track { get; set; }
    public string? Kernel { get; set; }
    public string? Initrd { get; set; }
    public string? Cmdline { get; set; }
    public string? Expect { get; set; }
    public string? Timeout { get; set; }
    public string? OnReboot { get; set; }

    /// <summary>Validate against this host's RAM (MemTotal).</summary>
    public ValidatedRunOptions Validate() => Validate(HostMemory.ReadTotal());

    /// <summary>Checked values, or an <see cref="OptionsException"/> naming the first bad setting; reads only file metadata and the kernel's headers.</summary>
    public ValidatedRunOptions Validate(ulong? hostMemoryBytes)
    {
        bool force = Switch(RunSetting.ForceMemory, ForceMemory);
        ulong memory = ValidateMemory(hostMemoryBytes, force);
        var layout = new GuestRamLayout(memory);
        int cpus = ValidateCpus();
        CpuMode mode = (Mode ?? "long").ToLowerInvariant() switch
        {
            "long" => CpuMode.Long,
            "real" => CpuMode.Real,
            _ => throw new OptionsException(RunSetting.Mode, Mode!, "give long or real"),
        };
        bool restartOnReboot = (OnReboot ?? "exit").ToLowerInvariant() switch
        {
            "exit" => false,
            "restart" => true,
            _ => throw new OptionsException(RunSetting.OnReboot, OnReboot!, "give exit or restart"),
        };
        TimeSpan? timeout = ValidateTimeout();
        if (Expect is { Length: 0 }) throw new OptionsException(RunSetting.Expect, "", "give the text to wait for");
        bool memfd = Switch(RunSetting.Memfd, Memfd);
        bool stats = Switch(RunSetting.Stats, Stats);
        string kvmDevice = KvmDevice ?? Kvm.KvmSystem.DefaultPath;
        if (kvmDevice.Length == 0) throw new OptionsException(RunSetting.KvmDevice, "", $"give the KVM device, e.g. {Kvm.KvmSystem.DefaultPath}");
        string serial = Serial ?? "stdout";
        if (serial != "stdout" && InputFiles.WhyNotWritable(serial) is { } unwritable)
            throw new OptionsException(RunSetting.Serial, serial, $"{unwritable}");

        ulong? entry = null;
        string cmdline = Cmdline ?? DefaultCmdline;
        if (Kernel is not null)
        {
            if (Image is not null) throw new OptionsException(RunSetting.Kernel, Kernel, "give either --kernel or --image, not both");
            if (Entry is not null) throw new OptionsException(RunSetting.Entry, Entry, "--entry only applies with --image FILE");
            ValidateLinux(layout, cmdline);
        }
        else
        {
            if (Initrd is not null) throw new OptionsException(RunSetting.Initrd, Initrd, "--initrd only applies with --kernel");
            if (Image is not null) entry = ValidateImage(layout, mode);
            else if (Entry is not null) throw new OptionsException(RunSetting.Entry, Entry, "--entry only applies with --image FILE");
            else if (memory < BuiltInGuest.MinimumMemory)
                throw new OptionsException(RunSetting.Memory, Memory!, $"the built-in guest needs at least {BuiltInGuest.MinimumMemory >> 20}M");
        }
        IReadOnlyList<GuestRange> track = ValidateTrack(layout);

        return new ValidatedRunOptions(memory, cpus, Image, entry, mode, kvmDevice, serial, memfd, track)
        {
            Kernel = Kernel,
            Initrd = Initrd,
            Cmdline = cmdline,
            Expect = Expect,
            Timeout = timeout,
            RestartOnReboot = restartOnReboot,
            Stats = stats,
            ForceMemory = force,
        };
    }

    private ulong ValidateMemory(ulong? hostMemoryBytes, bool force)
    {
        string text = Memory ?? "64M";
        if (!SizeParser.TryParse(text, out ulong memory) || memory < (1UL << 20) || memory % (1UL << 20) != 0)
            throw new OptionsException(RunSetting.Memory, text, "give a whole number of MiB such as 64M or 2G, at least 1M");
        if (memory > MaximumMemory)
            throw new OptionsException(RunSetting.Memory, text, $"give at most {MaximumMemory >> 40}T, the most guest RAM KvmSharp lays out");
        if (!force && hostMemoryBytes is { } host && memory > host)
            throw new OptionsException(RunSetting.Memory, text,
                $"this host has {Size(host)} of RAM (MemTotal in /proc/meminfo); give less, or add --force-memory to overcommit");
        return memory;
    }

    private int ValidateCpus()
    {
        string text = Cpus ?? "1";
        int max = Vmm.Machine.VmConfig.MaximumCpus;
        if (!int.TryParse(text.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out int cpus) || cpus < 1 || cpus > max)
            throw new OptionsException(RunSetting.Cpus, text, $"give a whole number from 1 to {max}");
        return cpus;
    }

    private TimeSpan? ValidateTimeout()
    {
        if (Timeout is null) return null;
        const double Week = 7 * 24 * 3600;
        if (!double.TryParse(Timeout.Trim(), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out double seconds) || !double.IsFinite(seconds) || seconds <= 0 || seconds > Week)
            throw new OptionsException(RunSetting.Timeout, Timeout, "give a number of seconds above 0 and at most a week, e.g. 30 or 1.5");
        return TimeSpan.FromSeconds(seconds);
    }

    private static bool Switch(RunSetting setting, string? text)
    {
        if (text is null) return false;
        if (bool.TryParse(text.Trim(), out bool value)) return value;
        throw new OptionsException(setting, text, $"give true or false ({setting.Flag} alone means true)");
    }

    private ulong ValidateImage(GuestRamLayout layout, CpuMode mode)
    {
        string image = Image!;
        ulong size = InputFiles.RequireRegularFile(RunSetting.Image, image);
        if (size == 0) throw new OptionsException(RunSetting.Image, image, "the file is empty");
        if (size > layout.MemoryBytes)
            throw new OptionsException(RunSetting.Image, image, $"the image ({Size(size)}) is larger than guest memory ({Size(layout.MemoryBytes)}); give more --memory");
        if (Entry is null) throw new OptionsException(RunSetting.Entry, "(missing)", "--image needs --entry ADDR");
        if (!SizeParser.TryParseAddress(Entry, out ulong entry)) throw new OptionsException(RunSetting.Entry, Entry, "give an address such as 0x100000");
        if (mode == CpuMode.Long && entry < LongModeSetup.LowestUsableAfterTables)
            throw new OptionsException(RunSetting.Entry, Entry,
                $"a long-mode image loads at its entry, which must be at or above 0x{LongModeSetup.LowestUsableAfterTables:x} (the page tables and stacks live below); give e.g. 0x100000");
        if (mode == CpuMode.Real && entry > 0xFFFF)
            throw new OptionsException(RunSetting.Entry, Entry, "real mode starts at CS:IP = 0:entry, so the entry must be below 0x10000; give e.g. 0x7c00, or --mode long");
        if (entry >= layout.LowEnd)
            throw new OptionsException(RunSetting.Entry, Entry, $"is outside guest RAM ({layout}); a flat image loads below 0x{layout.LowEnd:x}");
        if (size > layout.LowEnd - entry)
            throw new OptionsException(RunSetting.Image, image,
                $"{size} bytes loaded at 0x{entry:x} end at 0x{entry + size:x}, beyond guest RAM (it ends at 0x{layout.LowEnd:x}); give more --memory or a lower --entry");
        return entry;
    }

    private void ValidateLinux(GuestRamLayout layout, string cmdline)
    {
        string kernelPath = Kernel!;
        ulong kernelSize = InputFiles.RequireRegularFile(RunSetting.Kernel, kernelPath);
        if (kernelSize > layout.MemoryBytes)
            throw new OptionsException(RunSetting.Kernel, kernelPath, $"the kernel ({Size(kernelSize)}) is larger than guest memory ({Size(layout.MemoryBytes)}); give more --memory");
        ulong? initrdSize = null;
        if (Initrd is not null)
        {
            initrdSize = InputFiles.RequireRegularFile(RunSetting.Initrd, Initrd);
            if (initrdSize > layout.MemoryBytes)
                throw new OptionsException(RunSetting.Initrd, Initrd, $"the initrd ({Size(initrdSize.Value)}) is larger than guest memory ({Size(layout.MemoryBytes)}); give more --memory");
        }
        if (layout.LowEnd < LinuxBootLayout.MinimumMemory)
            throw new OptionsException(RunSetting.Memory, Memory ?? "64M", $"Linux needs at least {LinuxBootLayout.MinimumMemory >> 20}M");

        var kernel = KernelFacts.Read(kernelPath);
        if (kernel.NeedsMemoryUpTo > layout.LowEnd)
            throw new OptionsException(RunSetting.Memory, Memory ?? "64M",
                $"the kernel needs guest RAM up to 0x{kernel.NeedsMemoryUpTo:x} to load and decompress; give --memory {MiBAbove(kernel.NeedsMemoryUpTo)}M or more");
        int limit = Math.Min(kernel.CommandLineLimit ?? PvhCommandLineLimit, CommandLineSpace);
        if (cmdline.Length > limit)
            throw new OptionsException(RunSetting.Cmdline, Abbreviate(cmdline),
                $"{cmdline.Length} bytes is longer than this kernel accepts ({limit} bytes{(kernel.CommandLineLimit is null ? ", x86 Linux's limit" : ", cmdline_size in its header")})");
        if (initrdSize is { } size)
        {
            ulong ceiling = Math.Min(layout.LowEnd, kernel.InitrdCeiling);
            if (size > ceiling || ((ceiling - size) & ~0xFFFUL) < kernel.NeedsMemoryUpTo)
                throw new OptionsException(RunSetting.Initrd, Initrd!,
                    $"the initrd ({Size(size)}) does not fit between the kernel (it ends at 0x{kernel.NeedsMemoryUpTo:x}) and 0x{ceiling:x}; give more --memory");
        }
    }

    private IReadOnlyList<GuestRange> ValidateTrack(GuestRamLayout layout)
    {
        if (string.IsNullOrWhiteSpace(Track)) return [];
        IReadOnlyList<GuestRange> ranges;
        try
        {
            ranges = GuestRange.ParseList(Track);
        }
        catch (FormatException e)
        {
            throw new OptionsException(RunSetting.Track, Track, e.Message + "; give GPA, GPA-GPA or GPA+SIZE, comma-separated");
        }
        foreach (var range in ranges)
        {
            if (layout.IsRam(range)) continue;
            string where = layout.TouchesHole(range)
                ? $"{range} lies in the PCI hole (0x{Vmm.Machine.VirtualMachine.LowRamLimit:x}-0x{Vmm.Machine.VirtualMachine.HighRamBase:x}), which is not RAM"
                : $"{range} lies beyond guest memory";
            throw new OptionsException(RunSetting.Track, Track, $"{where}; guest RAM is {layout} (RAM above 3 GiB is remapped above 4 GiB)");
        }
        return ranges;
    }

    private static string Abbreviate(string text) => text.Length <= 40 ? text : text[..37] + "...";

    private static ulong MiBAbove(ulong bytes) => (bytes + (1UL << 20) - 1) >> 20;

    /// <summary>A size for messages: "23 GiB", "512 MiB", or bytes.</summary>
    public static string Size(ulong bytes) =>
        bytes >= 1UL << 30 && bytes % (1UL << 30) == 0 ? $"{bytes >> 30} GiB" :
        bytes >= 1UL << 30 ? $"{bytes / (double)(1UL << 30):0.0} GiB" :
        bytes >= 1UL << 20 ? $"{MiBAbove(bytes)} MiB" : $"{bytes} bytes";
}
