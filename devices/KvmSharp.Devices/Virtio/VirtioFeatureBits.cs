namespace KvmSharp.Devices.Virtio;

/// <summary>Device-independent feature bits (linux/virtio_config.h, virtio_ring.h).</summary>
public static class VirtioFeatureBits
{
    public const ulong VIRTIO_RING_F_INDIRECT_DESC = 1UL << 28;
    public const ulong VIRTIO_RING_F_EVENT_IDX = 1UL << 29;
    /// <summary>Modern (virtio 1.x) device; KvmSharp's transport always offers and requires it.</summary>
    public const ulong VIRTIO_F_VERSION_1 = 1UL << 32;
}
