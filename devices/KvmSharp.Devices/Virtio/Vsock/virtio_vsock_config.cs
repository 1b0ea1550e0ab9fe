using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Vsock;

/// <summary>virtio-vsock's configuration space: the guest's context id (read-only).</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_vsock.h", "struct virtio_vsock_config")]
public struct virtio_vsock_config
{
    public ulong guest_cid;
}
