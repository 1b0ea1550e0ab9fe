using KvmSharp.Devices.Memory;

namespace KvmSharp.Devices.Virtio;

/// <summary>Everything a device needs once the driver sets DRIVER_OK.</summary>
public sealed record VirtioActivation(
    ulong NegotiatedFeatures,
    IReadOnlyList<VirtqueueConfig> Queues,
    IGuestMemory Memory,
    IVirtioInterrupt Interrupt,
    IVirtioTransportStatus Transport);
