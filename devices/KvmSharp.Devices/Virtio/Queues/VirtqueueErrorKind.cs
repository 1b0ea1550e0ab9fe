namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>How a driver broke a split virtqueue's rules; any of them makes the device need a reset.</summary>
public enum VirtqueueErrorKind
{
    /// <summary>Size not a power of two, or a ring misaligned, wrapping past 2^64 or outside guest RAM.</summary>
    BadRingLayout,
    /// <summary>The available index ran ahead of the device by more than the queue size.</summary>
    AvailIndexTooFar,
    /// <summary>A head or <c>next</c> index is not below the queue (or indirect table) size.</summary>
    IndexOutOfRange,
    /// <summary>A chain visits a descriptor twice.</summary>
    DescriptorLoop,
    /// <summary>A chain (or an indirect table) has more descriptors than the queue size.</summary>
    ChainTooLong,
    /// <summary>An indirect descriptor although VIRTIO_RING_F_INDIRECT_DESC was not negotiated.</summary>
    IndirectNotNegotiated,
    /// <summary>An indirect descriptor inside an indirect table.</summary>
    NestedIndirect,
    /// <summary>An indirect descriptor that also has VRING_DESC_F_NEXT.</summary>
    IndirectWithNext,
    /// <summary>An indirect table whose length is zero or not a multiple of 16.</summary>
    BadIndirectLength,
    /// <summary>A buffer whose address plus length wraps past 2^64.</summary>
    AddressOverflow,
    /// <summary>A buffer, a descriptor or a ring entry outside guest RAM.</summary>
    OutsideGuestMemory,
    /// <summary>The readable or the writable lengths of a chain sum to more than 2^32 - 1.</summary>
    LengthOverflow,
    /// <summary>A device-readable buffer after a device-writable one.</summary>
    ReadableAfterWritable,
    /// <summary>The used ring (or avail_event) cannot be written, e.g. read-only memory.</summary>
    UsedRingNotWritable,
}
