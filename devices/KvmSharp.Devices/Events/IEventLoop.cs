namespace KvmSharp.Devices.Events;

/// <summary>
/// The VM's I/O thread: one epoll loop per VM that owns eventfds and device back ends, so vCPU
/// threads only run the guest and dispatch exits. Callbacks run on the loop's thread, one at a time.
/// </summary>
public interface IEventLoop
{
    /// <summary>Run <paramref name="work"/> on the loop thread soon (from any thread).</summary>
    void Post(Action work);

    /// <summary>Call <paramref name="onReadable"/> on the loop thread whenever <paramref name="fd"/> is readable, until the returned handle is disposed.</summary>
    IDisposable Watch(System.Runtime.InteropServices.SafeHandle fd, Action onReadable);
}
