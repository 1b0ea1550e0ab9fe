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

    /// <summary>virtio-net NICs on taps (Linux guests), in --net order.</summary>
    public IReadOnlyList<Devices.Virtio.Net.NetSpec> Nets { get; init; } = [];

    /// <summary>A virtio-rng device (Linux guests; off with --no-rng).</summary>
    public bool Rng { get; init; }

    /// <summary>Named virtio-console ports (--port), in order.</summary>
    public IReadOnlyList<Devices.Virtio.Console.ConsolePortSpec> Ports { get; init; } = [];

    /// <summary>--console virtio: the Linux console on hvc0.</summary>
    public bool VirtioConsole { get; init; }

    /// <summary>The modules of a multiboot --kernel (from --initrd), or null when --kernel is not multiboot.</summary>
    public IReadOnlyList<Vmm.Boot.Multiboot.MultibootModule>? MultibootModules { get; init; }

    /// <summary>--kernel is a multiboot kernel (<see cref="Cmdline"/> then starts with its path).</summary>
    public bool Multiboot => MultibootModules is not null;

    /// <summary>--debug-exit: port, width and behaviour.</summary>
    public Devices.Debug.DebugExitSpec DebugExit { get; init; } = Devices.Debug.DebugExitSpec.Default;

    /// <summary>Host directories shared over virtio-fs (--share), in order.</summary>
    public IReadOnlyList<Devices.Virtio.Fs.ShareOptions> Shares { get; init; } = [];

    /// <summary>--tracker-sock: where out-of-process page trackers connect (guest RAM is then memfd-backed).</summary>
    public string? TrackerSocket { get; init; }

    /// <summary>--vsock: a virtio-vsock device and its host socket, or null.</summary>
    public Devices.Virtio.Vsock.VsockSpec? Vsock { get; init; }

    /// <summary>--memory was allowed above the host's RAM.</summary>
    public bool ForceMemory { get; init; }

    /// <summary>Where the control API listens (--api-sock, or systemd's socket), and whether the VM waits for InstanceStart; null: no API.</summary>
    public ApiSettings.Endpoint? Api { get; init; }
}
