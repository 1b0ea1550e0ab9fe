using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.VhostUser;

/// <summary>
/// One region of SET_MEM_TABLE. The kernel's vhost calls the last field flags_padding; vhost-user uses it
/// as the offset of the region in the file descriptor sent with the message (mmap_offset).
/// </summary>
[StructLayout(LayoutKind.Sequential)]
[VirtioLayout("linux/vhost_types.h", "struct vhost_memory_region")]
public struct vhost_memory_region
{
    public ulong guest_phys_addr;
    public ulong memory_size;
    public ulong userspace_addr;
    [VirtioFieldName("flags_padding")]
    public ulong mmap_offset;
}
