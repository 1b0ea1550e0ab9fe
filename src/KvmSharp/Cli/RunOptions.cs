using System.Globalization;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Guests;
using KvmSharp.Vmm.Machine;
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

    /// <summary>
    /// The default with --console virtio: hvc0 is the preferred console (the last console=) once its
    /// driver loads; ttyS0 serves until then. With console=hvc0 alone a kernel whose virtio_console is a
    /// module (Debian's) has no console when init starts ("unable to open an initial console"), and an
    /// init that needs stdio dies (seen in the testbed).
    /// </summary>
    public const string DefaultVirtioConsoleCmdline = "console=ttyS0 console=hvc0 reboot=k panic=-1";
    public const string DefaultMemory = "64M";

    /// <summary>The most guest RAM KvmSharp lays out, even with --force-memory.</summary>
    public const ulong MaximumMemory = 1UL << 40;

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
    public string? NoRng { get; set; }
    public string? Console { get; set; }

    // Repeatable settings are set by Settings.BindRunOptions from one layer (not by the binder, which would mix layers).
    private readonly Dictionary<RunSetting, IReadOnlyList<string>> _lists = new();

    /// <summary>The values of a repeatable setting (--drive, --port, ...), in order.</summary>
    public IReadOnlyList<string> List(RunSetting setting) => _lists.TryGetValue(setting, out var values) ? values : [];

    public void SetList(RunSetting setting, IReadOnlyList<string> values)
    {
        if (!setting.IsRepeatable) throw new ArgumentException($"{setting.Name} is not a repeatable setting", nameof(setting));
        _lists[setting] = values;
    }

    /// <summary>Validate against this host's RAM (MemTotal).</summary>
    public ValidatedRunOptions Validate() => Validate(HostMemory.ReadTotal());

    /// <summary>
    /// Checked values, or an <see cref="OptionsException"/> naming the first bad setting. Kernel, initrd
    /// and image are checked by the loaders' own checks (<see cref="LinuxLoader.Check(LinuxBootConfig, ulong)"/>,
    /// <see cref="GuestImage.Check"/>), which read only file metadata and the kernel.
    /// </summary>
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
        var virtio = VirtioSettings.Validate(this, linux: Kernel is not null);
        string kvmDevice = KvmDevice ?? Kvm.KvmSystem.DefaultPath;
        if (kvmDevice.Length == 0) throw new OptionsException(RunSetting.KvmDevice, "", $"give the KVM device, e.g. {Kvm.KvmSystem.DefaultPath}");
        string serial = Serial ?? "stdout";
        if (serial != "stdout" && InputFiles.WhyNotWritable(serial) is { } unwritable)
            throw new OptionsException(RunSetting.Serial, serial, $"{unwritable}");

        ulong? entry = null;
        string cmdline = Cmdline ?? (virtio.VirtioConsole ? DefaultVirtioConsoleCmdline : DefaultCmdline);
        if (Kernel is not null)
        {
            if (Image is not null) throw new OptionsException(RunSetting.Kernel, Kernel, "give either --kernel or --image, not both");
            if (Entry is not null) throw new OptionsException(RunSetting.Entry, Entry, "--entry only applies with --image FILE");
            ValidateLinux(memory, cmdline);
        }
        else
        {
            if (Initrd is not null) throw new OptionsException(RunSetting.Initrd, Initrd, "--initrd only applies with --kernel");
            if (Image is not null) entry = ValidateImage(memory, mode);
            else if (Entry is not null) throw new OptionsException(RunSetting.Entry, Entry, "--entry only applies with --image FILE");
            else if (memory < BuiltInGuest.MinimumMemory)
                throw new OptionsException(RunSetting.Memory, Memory!, $"the built-in guest needs at least {BuiltInGuest.MinimumMemory >> 20}M");
        }
        IReadOnlyList<GuestRange> track = ValidateTrack(layout);

        // virtiofsd maps guest RAM, so a share needs it memfd-backed.
        memfd |= virtio.Shares.Count > 0;
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
            Drives = virtio.Drives,
            Rng = virtio.Rng,
            VirtioConsole = virtio.VirtioConsole,
            Ports = virtio.Ports,
            Shares = virtio.Shares,
        };
    }

    private ulong ValidateMemory(ulong? hostMemoryBytes, bool force)
    {
        string text = Memory ?? DefaultMemory;
        if (!SizeParser.TryParse(text, out ulong memory) || memory < (1UL << 20) || memory % (1UL << 20) != 0)
            throw new OptionsException(RunSetting.Memory, text, "give a whole number of MiB such as 64M or 2G, at least 1M");
        if (memory > MaximumMemory)
            throw new OptionsException(RunSetting.Memory, text, $"give at most {MaximumMemory >> 40}T, the most guest RAM KvmSharp lays out");
        if (!force && hostMemoryBytes is { } host && memory > host)
            throw new OptionsException(RunSetting.Memory, text,
                $"this host has {GuestFile.FormatSize(host)} of RAM (MemTotal in /proc/meminfo); give less, or add --force-memory to overcommit");
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

    internal static bool Switch(RunSetting setting, string? text)
    {
        if (text is null) return false;
        if (bool.TryParse(text.Trim(), out bool value)) return value;
        throw new OptionsException(setting, text, $"give true or false ({setting.Flag} alone means true)");
    }

    private ulong ValidateImage(ulong memory, CpuMode mode)
    {
        string image = Image!;
        if (Entry is null) throw new OptionsException(RunSetting.Entry, "(missing)", "--image needs --entry ADDR");
        if (!SizeParser.TryParseAddress(Entry, out ulong entry)) throw new OptionsException(RunSetting.Entry, Entry, "give an address such as 0x100000");
        CheckedByTheVmm(RunSetting.Image, image, () => GuestImage.Check(image, memory, entry, mode));
        return entry;
    }

    private void ValidateLinux(ulong memory, string cmdline)
    {
        string kernel = Kernel!, initrd = Initrd!;
        // The initrd on its own first, so that a file the whole check below cannot find or open is the kernel.
        if (Initrd is not null) CheckedByTheVmm(RunSetting.Initrd, initrd, () => LinuxLoader.CheckInitrd(initrd, memory));
        CheckedByTheVmm(RunSetting.Kernel, kernel, () => LinuxLoader.Check(new LinuxBootConfig(kernel, Initrd, cmdline), memory));
    }

    // The VMM's checks are the rules for guest files and placement; this only names the setting that
    // was wrong: the one the refusal says (GuestInputException), else the file being checked.
    private void CheckedByTheVmm(RunSetting file, string path, Action check)
    {
        try
        {
            check();
        }
        catch (GuestInputException e)
        {
            throw e.Input switch
            {
                GuestInput.Memory => new OptionsException(RunSetting.Memory, Memory ?? DefaultMemory, e.Reason),
                GuestInput.CommandLine => new OptionsException(RunSetting.Cmdline, Abbreviate(Cmdline ?? DefaultCmdline), e.Reason),
                GuestInput.Initrd => new OptionsException(RunSetting.Initrd, Initrd ?? path, e.Reason),
                GuestInput.Entry => new OptionsException(RunSetting.Entry, Entry ?? path, e.Reason),
                GuestInput.Cpus => new OptionsException(RunSetting.Cpus, Cpus ?? "1", e.Reason),
                _ => new OptionsException(file, path, e.Reason),
            };
        }
        catch (Exception e) when (e is InvalidDataException or IOException or UnauthorizedAccessException)
        {
            throw new OptionsException(file, path, WithoutSubject(e.Message, path));
        }
        catch (Exception e) when (e is ArgumentException or IndexOutOfRangeException or OverflowException or InvalidOperationException)
        {
            // A parser that trips over a header instead of refusing it (a bug of the parser, which the
            // property tests hunt); the file is still the user's to fix.
            throw new OptionsException(file, path, $"is not a file KvmSharp can boot: its headers point outside the file ({e.GetType().Name})");
        }
    }

    // "kernel '/boot/x' is a directory; give a file" -> "is a directory; give a file": the
    // OptionsException already names the setting and the path.
    private static string WithoutSubject(string message, string path)
    {
        string quoted = $"'{path}'";
        int at = message.IndexOf(quoted, StringComparison.Ordinal);
        if (at < 0 || at > 16 || message.AsSpan(0, at).Contains('\'')) return message;
        return message[(at + quoted.Length)..].TrimStart(':', ' ');
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
}
