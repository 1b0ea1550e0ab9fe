using KvmSharp.Devices.Virtio;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>Counts the interrupts a device raises, per queue.</summary>
internal sealed class RecordingVirtioInterrupt : IVirtioInterrupt
{
    private readonly int[] _queueNotifications = new int[8];
    private int _configChanges;

    public int QueueNotifications(int queue) => Volatile.Read(ref _queueNotifications[queue]);

    public int ConfigChanges => Volatile.Read(ref _configChanges);

    public void NotifyQueue(int queueIndex) => Interlocked.Increment(ref _queueNotifications[queueIndex]);

    public void NotifyConfigChange() => Interlocked.Increment(ref _configChanges);
}
