using KvmSharp.Devices.Events;

namespace KvmSharp.Devices.Virtio;

/// <summary>
/// Implemented by a device whose queues another process serves (a vhost-user back end): the transport
/// registers each queue's eventfd as that queue's doorbell (an ioeventfd), so a guest kick signals the
/// back end directly and nothing in the VMM reads it. A doorbell the host cannot take that way still
/// reaches <see cref="IVirtioDevice.QueueNotify"/>, which signals the same eventfd.
/// </summary>
public interface IVirtioQueueDoorbells
{
    /// <summary>The eventfd the guest's doorbell of queue <paramref name="queueIndex"/> signals; the device owns it.</summary>
    EventFd QueueDoorbell(int queueIndex);
}
