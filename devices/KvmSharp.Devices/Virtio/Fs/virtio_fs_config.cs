using System.Runtime.InteropServices;
using KvmSharp.Devices.Virtio.Queues;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>virtio-fs's device configuration space (packed): the tag the guest mounts by, and the number of request queues.</summary>
[StructLayout(LayoutKind.Sequential, Pack = 1)]
[VirtioLayout("linux/virtio_fs.h", "struct virtio_fs_config")]
public unsafe struct virtio_fs_config
{
    /// <summary>Bytes of the tag: UTF-8, padded with NULs, not NUL-terminated.</summary>
    public const int TagLength = 36;

    public fixed byte tag[TagLength];
    public uint num_request_queues;
}
