namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>Flag bits of the split ring (linux/virtio_ring.h).</summary>
public static class VringFlags
{
    /// <summary>The descriptor continues via its <c>next</c> field.</summary>
    public const ushort VRING_DESC_F_NEXT = 1;
    /// <summary>The buffer is device-writable (otherwise device-readable).</summary>
    public const ushort VRING_DESC_F_WRITE = 2;
    /// <summary>The buffer holds a table of descriptors (needs VIRTIO_RING_F_INDIRECT_DESC).</summary>
    public const ushort VRING_DESC_F_INDIRECT = 4;

    /// <summary>In the used ring's flags: the driver need not kick (advisory; KvmSharp leaves it clear).</summary>
    public const ushort VRING_USED_F_NO_NOTIFY = 1;
    /// <summary>In the available ring's flags: the driver does not want interrupts (ignored under EVENT_IDX).</summary>
    public const ushort VRING_AVAIL_F_NO_INTERRUPT = 1;
}
