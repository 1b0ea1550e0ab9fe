namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>Why a queue stopped: the rule broken and the values involved. <see cref="ToString"/> is the reason given to <see cref="IVirtioTransportStatus.MarkNeedsReset"/>.</summary>
public sealed record VirtqueueError(int QueueIndex, VirtqueueErrorKind Kind, string Detail)
{
    public override string ToString() => $"virtqueue {QueueIndex}: {Kind}: {Detail}";
}
