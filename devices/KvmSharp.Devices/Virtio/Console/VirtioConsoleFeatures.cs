namespace KvmSharp.Devices.Virtio.Console;

/// <summary>virtio-console feature bits (linux/virtio_console.h), as bit numbers.</summary>
public static class VirtioConsoleFeatures
{
    public const int VIRTIO_CONSOLE_F_SIZE = 0;
    public const int VIRTIO_CONSOLE_F_MULTIPORT = 1;
    public const int VIRTIO_CONSOLE_F_EMERG_WRITE = 2;
}
