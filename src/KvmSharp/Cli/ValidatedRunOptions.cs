using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Trackers;

namespace KvmSharp.Cli;

/// <summary>The settings of `kvmsharp run` after <see cref="RunOptions.Validate"/>: typed and checked against the files and the host.</summary>
public sealed record ValidatedRunOptions(ulong MemoryBytes, int Cpus, string? Image, ulong? Entry, CpuMode Mode, string KvmDevice, string Serial, bool Memfd, IReadOnlyList<GuestRange> Track)
{
    public string? Kernel { get; init; }
    public string? Initrd { get; init; }
    public string Cmdline { get; init; } = RunOptions.DefaultCmdline;
    public string? Expect { get; init; }
    public TimeSpan? Timeout { get; init; }
    public bool RestartOnReboot { get; init; }
    public bool Stats { get; init; }

    /// <summary>virtio-blk disks (Linux guests), vda first.</summary>
    public IReadOnlyList<Devices.Virtio.Block.DriveSpec> Drives { get; init; } = [];

    /// <summary>A virtio-rng device (Linux guests; off with --no-rng).</summary>
    public bool Rng { get; init; }

    /// <summary>Named virtio-console ports (--port), in order.</summary>
    public IReadOnlyList<Devices.Virtio.Console.ConsolePortSpec> Ports { get; init; } = [];

    /// <summary>--console virtio: the Linux console on hvc0.</summary>
    public bool VirtioConsole { get; init; }

    /// <summary>Host directories shared over virtio-fs (--share), in order.</summary>
    public IReadOnlyList<Devices.Virtio.Fs.ShareOptions> Shares { get; init; } = [];

    /// <summary>--memory was allowed above the host's RAM.</summary>
    public bool ForceMemory { get; init; }
}
