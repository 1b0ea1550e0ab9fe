namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>
/// The interrupt and status handles one activation of a device gets. A reset revokes them, so a device
/// thread that still holds them after the reset (a late completion) can neither interrupt the driver nor
/// mark the freshly reset device as broken.
/// </summary>
internal sealed class VirtioPciActivationSession(VirtioPciFunction function) : IVirtioInterrupt, IVirtioTransportStatus
{
    private volatile bool _revoked;

    public bool IsRevoked => _revoked;

    public void Revoke() => _revoked = true;

    public void NotifyQueue(int queueIndex)
    {
        if (!_revoked)
        {
            function.RaiseQueueInterrupt(queueIndex);
        }
    }

    public void NotifyConfigChange()
    {
        if (!_revoked)
        {
            function.RaiseConfigChange(bumpGeneration: true);
        }
    }

    public void MarkNeedsReset(string reason)
    {
        if (!_revoked)
        {
            function.MarkNeedsReset(reason);
        }
    }
}
