namespace KvmSharp.Devices.Events;

/// <summary>
/// Lets a device take guest doorbell writes (e.g. a virtio queue notify) off the vCPU thread: the
/// VMM backs it with KVM_IOEVENTFD and the event loop, so <c>onNotify</c> runs on the loop thread
/// and the vCPU never exits to userspace for the write. When the host cannot, the registration
/// returns null and the write reaches the device through the MMIO bus as usual.
/// </summary>
public interface IGuestNotifyRegistrar
{
    /// <summary>Route guest writes of <paramref name="length"/> bytes to MMIO <paramref name="address"/> (any value) to <paramref name="onNotify"/>; dispose to remove.</summary>
    IDisposable? RegisterMmioNotify(ulong address, int length, Action onNotify);

    /// <summary>
    /// Route guest writes of <paramref name="length"/> bytes to MMIO <paramref name="address"/> to <paramref name="eventFd"/>
    /// alone: nothing in the VMM reads it (another process, e.g. a vhost-user back end, does). The caller keeps
    /// the eventfd; dispose the registration to remove it. Null when the host cannot.
    /// </summary>
    IDisposable? RegisterMmioNotify(ulong address, int length, EventFd eventFd) => null;
}
