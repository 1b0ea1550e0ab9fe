using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>One event on virtio-vsock's event queue.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_vsock.h", "struct virtio_vsock_event")]
public struct virtio_vsock_event
{
    public const int Size = 4;

    /// <summary><see cref="VirtioVsockEventId"/>.</summary>
    public uint id;
}
