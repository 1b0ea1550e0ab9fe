using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>One buffer of a descriptor chain, already validated (no wrap-around, inside guest RAM when it was popped).</summary>
/// <param name="Address">Guest-physical start.</param>
/// <param name="Length">Bytes.</param>
/// <param name="DeviceWritable">The device writes it (VRING_DESC_F_WRITE); otherwise the device reads it.</param>
public readonly record struct VirtqueueSegment(GuestAddress Address, uint Length, bool DeviceWritable);
