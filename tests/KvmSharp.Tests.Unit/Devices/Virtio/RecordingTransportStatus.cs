using System.Collections.Concurrent;
using KvmSharp.Devices.Virtio;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>Records MarkNeedsReset calls.</summary>
internal sealed class RecordingTransportStatus : IVirtioTransportStatus
{
    private readonly ConcurrentQueue<string> _reasons = new();

    public IReadOnlyCollection<string> Reasons => _reasons;

    public bool NeedsReset => !_reasons.IsEmpty;

    public void MarkNeedsReset(string reason) => _reasons.Enqueue(reason);
}
