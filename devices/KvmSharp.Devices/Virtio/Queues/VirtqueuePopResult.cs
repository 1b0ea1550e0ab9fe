namespace KvmSharp.Devices.Virtio.Queues;

/// <summary>What <see cref="SplitVirtqueue.Pop"/> found.</summary>
public enum VirtqueuePopResult
{
    /// <summary>No chain is available now.</summary>
    Empty,
    /// <summary>A valid chain was filled in.</summary>
    Chain,
    /// <summary>The driver broke the rules; <see cref="SplitVirtqueue.Failure"/> says how. The queue serves nothing more until reset.</summary>
    Broken,
}
