namespace KvmSharp.Devices.Serial;

/// <summary>Where typed console bytes go: the 16550's receive FIFO, or a virtio-console's port 0 (hvc0).</summary>
public interface IConsoleInput
{
    /// <summary>Hand over what fits now; returns how many bytes were taken (the caller retries the rest). Any thread.</summary>
    int EnqueueInput(ReadOnlySpan<byte> values);
}
