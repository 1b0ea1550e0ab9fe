namespace KvmSharp.Devices.Virtio;

/// <summary>How a virtio device interrupts the driver; the transport maps it to MSI-X vectors (or INTx + ISR).</summary>
public interface IVirtioInterrupt
{
    /// <summary>The device used buffers of <paramref name="queueIndex"/> and the driver wants to hear of it (the queue already checked EVENT_IDX / NO_INTERRUPT). Any thread.</summary>
    void NotifyQueue(int queueIndex);

    /// <summary>The device's configuration space changed (or it needs a reset).</summary>
    void NotifyConfigChange();
}
