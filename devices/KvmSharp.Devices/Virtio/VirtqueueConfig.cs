using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.Virtio;

/// <summary>One split virtqueue as the driver configured it through the transport, handed to the device at activation.</summary>
public readonly record struct VirtqueueConfig(
    int Index,
    ushort Size,
    bool Enabled,
    GuestAddress DescriptorTable,
    GuestAddress AvailableRing,
    GuestAddress UsedRing);
