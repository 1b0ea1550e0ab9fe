namespace KvmSharp.Memory.DirtyLog;

/// <summary>How a VM logs dirty pages. Bound from configuration; checked by <see cref="Validate"/>.</summary>
public sealed record DirtyLogOptions
{
    /// <summary>The smallest ring the kernel takes: one page of 16-byte entries.</summary>
    public const int MinimumRingEntries = 4096 / 16;

    /// <summary>Rings above this are refused before asking the kernel (16 MiB per vCPU).</summary>
    public const int MaximumRingEntries = 1 << 20;

    /// <summary>QEMU's suggested dirty-ring-size: 64 KiB per vCPU.</summary>
    public const int DefaultRingEntries = 4096;

    /// <summary>
    /// The mode, or null for the default: <see cref="DirtyLogMode.ManualProtect"/> where the kernel offers
    /// KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, else <see cref="DirtyLogMode.Bitmap"/>. The ring is used only
    /// when asked for (as in QEMU): it costs a ring per vCPU and exits when a ring fills.
    /// </summary>
    public DirtyLogMode? Mode { get; init; }

    /// <summary>Entries per vCPU ring (<see cref="DirtyLogMode.Ring"/> only): a power of two, 16 bytes each.</summary>
    public int RingEntries { get; init; } = DefaultRingEntries;

    /// <summary>Null when valid, else a one-line message naming the setting and how to fix it.</summary>
    public string? Validate()
    {
        if (Mode is { } mode && !Enum.IsDefined(mode))
            return $"dirty log mode {(int)mode} is unknown; use Bitmap, ManualProtect or Ring";
        if (RingEntries < MinimumRingEntries || RingEntries > MaximumRingEntries || (RingEntries & (RingEntries - 1)) != 0)
            return $"dirty ring entries: {RingEntries} is invalid; give a power of two from {MinimumRingEntries} to {MaximumRingEntries}";
        return null;
    }
}
