namespace KvmSharp.Devices.Virtio;

/// <summary>
/// A virtio device behind a transport (virtio-pci). It knows nothing of PCI or KVM: the transport
/// negotiates features, holds the queue registers, and calls these members. <see cref="QueueNotify"/>
/// runs on the VM's event loop thread (never a vCPU thread when an ioeventfd takes the kick); a
/// device that does blocking I/O hands it to its own workers.
/// </summary>
public interface IVirtioDevice : IDisposable
{
    VirtioDeviceType DeviceType { get; }

    /// <summary>Feature bits the device offers: its own, and the ring features it implements (EVENT_IDX, INDIRECT_DESC). The transport adds VERSION_1.</summary>
    ulong AvailableFeatures { get; }

    /// <summary>The maximum size of each queue; the count is the number of queues.</summary>
    IReadOnlyList<ushort> QueueMaxSizes { get; }

    /// <summary>Read the device-specific configuration space (out-of-range bytes read as zero).</summary>
    void ReadConfig(uint offset, Span<byte> data);

    /// <summary>A driver write to the device-specific configuration space (ignored where read-only).</summary>
    void WriteConfig(uint offset, ReadOnlySpan<byte> data);

    /// <summary>The driver set DRIVER_OK: start serving the queues.</summary>
    void Activate(VirtioActivation activation);

    /// <summary>The driver made buffers available in queue <paramref name="queueIndex"/>.</summary>
    void QueueNotify(int queueIndex);

    /// <summary>The driver reset the device (status 0): stop, finish or abandon in-flight requests, forget the queues. Returns once nothing touches guest memory any more.</summary>
    void Reset();
}
