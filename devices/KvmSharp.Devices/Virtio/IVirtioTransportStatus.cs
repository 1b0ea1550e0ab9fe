namespace KvmSharp.Devices.Virtio;

/// <summary>What a device may tell its transport about itself.</summary>
public interface IVirtioTransportStatus
{
    /// <summary>
    /// The driver broke the rules (a descriptor outside RAM, a looping chain, an overflowing length, a
    /// used ring it cannot write...): the transport sets DEVICE_NEEDS_RESET, logs <paramref name="reason"/>
    /// and sends a configuration-change interrupt. The device stops processing its queues until reset.
    /// </summary>
    void MarkNeedsReset(string reason);
}
