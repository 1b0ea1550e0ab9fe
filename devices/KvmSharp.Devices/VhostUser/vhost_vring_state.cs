using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.VhostUser;

/// <summary>A ring index and a number (SET_VRING_NUM, SET/GET_VRING_BASE, SET_VRING_ENABLE).</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/vhost_types.h", "struct vhost_vring_state")]
public struct vhost_vring_state
{
    public uint index;
    public uint num;
}
