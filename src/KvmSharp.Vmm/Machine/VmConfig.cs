using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Boot;

namespace KvmSharp.Vmm.Machine;

/// <summary>What a VM is made of. Validated by <see cref="Validate"/> before anything is created.</summary>
public sealed record VmConfig
{
    public const ulong MinimumMemory = 1UL << 20;
    public const int MaximumCpus = 255;

    public ulong MemoryBytes { get; init; } = 64UL << 20;
    public int Cpus { get; init; } = 1;
    /// <summary>A flat binary to boot; exactly one of <see cref="Image"/>, <see cref="Linux"/> and <see cref="Multiboot"/>.</summary>
    public GuestImage? Image { get; init; }

    /// <summary>A Linux kernel to boot through the 64-bit boot protocol, with irqchip, PIT and legacy devices.</summary>
    public Boot.Linux.LinuxBootConfig? Linux { get; init; }

    /// <summary>A multiboot kernel (test kernels written for QEMU), with the PC's irqchip, PIT, legacy devices and fw_cfg.</summary>
    public Boot.Multiboot.MultibootBootConfig? Multiboot { get; init; }
    /// <summary>
    /// Create KVM's in-kernel irqchip (PIC, IOAPIC, LAPICs) and PIT. Null (the default): for Linux
    /// and multiboot guests only. Flat images that take interrupts (MSI, IOAPIC) set it.
    /// </summary>
    public bool? Irqchip { get; init; }

    /// <summary>Whether this configuration gets the in-kernel irqchip.</summary>
    public bool UsesIrqchip => Irqchip ?? (Linux is not null || Multiboot is not null);

    public required ISerialSink SerialSink { get; init; }
    public string KvmPath { get; init; } = Kvm.KvmSystem.DefaultPath;
    public const ushort DefaultSerialPort = 0x3F8;
    public ushort SerialPort { get; init; } = DefaultSerialPort;
    public ushort DebugExitPort { get; init; } = 0x501;

    /// <summary>The debug-exit port's width in bytes (1, 2 or 4) and whether it ends the VM as QEMU's isa-debug-exit does: status (value &lt;&lt; 1) | 1.</summary>
    public int DebugExitWidth { get; init; } = 1;
    public bool DebugExitQemu { get; init; }

    /// <summary>Back guest RAM with a memfd (shareable with another process) instead of anonymous memory.</summary>
    public bool MemfdBacking { get; init; }

    /// <summary>Policies of the page tracker (MOVE with notifiers, notifier faults).</summary>
    public KvmSharp.Memory.PageTracking.PageTrackOptions PageTracking { get; init; } = new();

    /// <summary>Dirty logging: the mode (default ManualProtect where the kernel offers it, else Bitmap; Ring on request) and ring size.</summary>
    public KvmSharp.Memory.DirtyLog.DirtyLogOptions DirtyLog { get; init; } = new();

    /// <summary>Devices attached after the standard ones (serial, debug-exit, the PC's legacy devices), in order.</summary>
    public IReadOnlyList<DeviceAttachment> Devices { get; init; } = [];

    /// <summary>Where devices and the event loop log (ILogger&lt;T&gt;); none when null.</summary>
    public Microsoft.Extensions.Logging.ILoggerFactory? LoggerFactory { get; init; }

    /// <summary>Where the VM reports events worth a log line (notifier faults).</summary>
    public Action<string>? Log { get; init; }

    /// <summary>
    /// Throws <see cref="GuestInputException"/> naming the first invalid setting (memory, cpus, the
    /// image's entry or placement), or <see cref="ArgumentException"/> when not exactly one of
    /// <see cref="Image"/>, <see cref="Linux"/> and <see cref="Multiboot"/> is given (a caller's mistake, not the user's).
    /// </summary>
    public void Validate()
    {
        if (MemoryBytes < MinimumMemory || MemoryBytes % (1UL << 20) != 0)
            throw new GuestInputException(GuestInput.Memory, $"{MemoryBytes} bytes is invalid; give a whole number of MiB, at least 1 MiB");
        if (Cpus < 1 || Cpus > MaximumCpus)
            throw new GuestInputException(GuestInput.Cpus, $"{Cpus} is invalid; give 1 to {MaximumCpus}");
        if (DirtyLog.Validate() is { } dirtyLog) throw new ArgumentException(dirtyLog);
        if ((Image is null ? 0 : 1) + (Linux is null ? 0 : 1) + (Multiboot is null ? 0 : 1) != 1)
            throw new ArgumentException("give one of a flat image, a Linux kernel and a multiboot kernel to boot");
        if (DebugExitWidth is not (1 or 2 or 4) || DebugExitPort + DebugExitWidth > 0x10000)
            throw new ArgumentException($"debug-exit at port 0x{DebugExitPort:x} with width {DebugExitWidth}: the width is 1, 2 or 4 and the ports end at or below 0xffff");
        Image?.CheckPlacement(MemoryBytes);
    }
}
