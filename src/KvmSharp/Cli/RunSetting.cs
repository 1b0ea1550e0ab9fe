namespace KvmSharp.Cli;

/// <summary>
/// One setting of `kvmsharp run`: its flag, its key in the "KvmSharp" configuration section (and so
/// its KVMSHARP__NAME environment variable), and how help shows it. The one table the command line,
/// the configuration checks and the error messages are built from.
/// </summary>
public sealed record RunSetting(string Flag, string Key, string ValueName, string Description, bool IsSwitch = false, string[]? Values = null, bool IsRepeatable = false)
{
    /// <summary>The name messages use: the flag without its dashes ("kvm-device").</summary>
    public string Name => Flag[2..];

    public string ConfigurationKey => $"{RunOptions.Section}:{Key}";

    public string EnvironmentVariable => $"KVMSHARP__{Key.ToUpperInvariant()}";

    /// <summary>"--cpus, KvmSharp:Cpus, KVMSHARP__CPUS": every place the setting can come from.</summary>
    public string Sources => $"{Flag}, {ConfigurationKey}, {EnvironmentVariable}";

    public static readonly RunSetting Memory = new("--memory", "Memory", "SIZE", "Guest RAM, e.g. 64M, 2G [default: 64M]; above the host's RAM only with --force-memory");
    public static readonly RunSetting ForceMemory = new("--force-memory", "ForceMemory", "true|false", "Allow --memory above the host's RAM (MemTotal); pages are only used when touched", IsSwitch: true);
    public static readonly RunSetting Cpus = new("--cpus", "Cpus", "N", $"vCPUs, 1 to {Vmm.Machine.VmConfig.MaximumCpus} [default: 1]");
    public static readonly RunSetting Image = new("--image", "Image", "FILE", "Flat binary to boot instead of the built-in guest (needs --entry)");
    public static readonly RunSetting Entry = new("--entry", "Entry", "ADDR", "Load and entry address of --image, e.g. 0x100000 (long mode: 0x10000 or above; real mode: below 0x10000)");
    public static readonly RunSetting Mode = new("--mode", "Mode", "long|real", "CPU mode --image starts in [default: long]", Values: ["long", "real"]);
    public static readonly RunSetting Kernel = new("--kernel", "Kernel", "FILE", "Linux bzImage (or ELF vmlinux with a PVH note) to boot through the 64-bit boot protocol");
    public static readonly RunSetting Initrd = new("--initrd", "Initrd", "FILE", "Initrd for --kernel");
    public static readonly RunSetting Cmdline = new("--cmdline", "Cmdline", "TEXT", $"Kernel command line [default: \"{RunOptions.DefaultCmdline}\"]");
    public static readonly RunSetting OnReboot = new("--on-reboot", "OnReboot", "exit|restart", "What a guest reboot does [default: exit, status 0]", Values: ["exit", "restart"]);
    public static readonly RunSetting Expect = new("--expect", "Expect", "TEXT", "Exit 0 as soon as the console shows TEXT (CI boot tests)");
    public static readonly RunSetting Timeout = new("--timeout", "Timeout", "SECONDS", "Give up after SECONDS: exit 124 with the console's tail");
    public static readonly RunSetting Serial = new("--serial", "Serial", "stdout|FILE", "Where the guest's serial console goes [default: stdout]", Values: ["stdout"]);
    public static readonly RunSetting Memfd = new("--memfd", "Memfd", "true|false", "Back guest RAM with a memfd", IsSwitch: true);
    public static readonly RunSetting Stats = new("--stats", "Stats", "true|false", "Print exit statistics (per exit reason, port and MMIO range) at the end", IsSwitch: true);
    public static readonly RunSetting Track = new("--track", "Track", "RANGES", "Audit guest writes to these guest-physical RAM ranges: GPA, GPA-GPA (end exclusive) or GPA+SIZE, comma-separated");
    public static readonly RunSetting Drive = new("--drive", "Drive", Devices.Virtio.Block.DriveSpec.Syntax,
        "A raw disk image as a virtio-blk disk of a Linux guest; repeatable: vda, vdb, ... in order (settings: a list)", IsRepeatable: true);
    public static readonly RunSetting Port = new("--port", "Port", Devices.Virtio.Console.ConsolePortSpec.Syntax,
        "A named virtio-console port of a Linux guest (/dev/vportNpM, named NAME in /sys/class/virtio-ports): path=FILE takes its output, socket=PATH listens for one client both ways; repeatable (settings: a list)", IsRepeatable: true);
    public static readonly RunSetting NoRng = new("--no-rng", "NoRng", "true|false", "No virtio-rng entropy device (a Linux guest has one by default)", IsSwitch: true);
    public static readonly RunSetting Console = new("--console", "Console", "serial|virtio",
        "The Linux console: serial (ttyS0) or virtio (hvc0, a virtio-console; the 16550 stays for early boot) [default: serial]", Values: ["serial", "virtio"]);
    public static readonly RunSetting Share = new("--share", "Share", "path=DIR,tag=TAG[,readonly=on]",
        "Share a host directory with a Linux guest over virtio-fs (virtiofsd; implies --memfd); the guest mounts it with mount -t virtiofs TAG /mnt; repeatable", IsRepeatable: true);
    public static readonly RunSetting KvmDevice = new("--kvm-device", "KvmDevice", "PATH", $"KVM device [default: {Kvm.KvmSystem.DefaultPath}]");

    /// <summary>Every `run` setting, in the order help lists them.</summary>
    public static readonly IReadOnlyList<RunSetting> All =
        [Memory, ForceMemory, Cpus, Image, Entry, Mode, Kernel, Initrd, Cmdline, OnReboot, Expect, Timeout, Serial,
         Memfd, Stats, Track, Drive, Port, NoRng, Console, Share, KvmDevice];
}
