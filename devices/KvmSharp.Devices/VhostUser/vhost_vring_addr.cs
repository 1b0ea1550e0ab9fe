using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.VhostUser;

/// <summary>Where a ring's parts are (SET_VRING_ADDR), as front-end virtual addresses the back end translates through the memory table.</summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/vhost_types.h", "struct vhost_vring_addr")]
public struct vhost_vring_addr
{
    public uint index;
    /// <summary>VHOST_VRING_F_LOG (bit 0) asks for used-ring logging; KvmSharp leaves it clear.</summary>
    public uint flags;
    public ulong desc_user_addr;
    public ulong used_user_addr;
    public ulong avail_user_addr;
    public ulong log_guest_addr;
}
