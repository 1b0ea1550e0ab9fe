using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>A popped request on its way to an I/O worker; pooled by the device (one per queue slot at most).</summary>
internal sealed class BlockRequest
{
    public DescriptorChain Chain { get; } = new();

    /// <summary>The queue it came from (the activation it belongs to).</summary>
    public SplitVirtqueue? Queue { get; set; }

    public IGuestMemory? Memory { get; set; }
}
