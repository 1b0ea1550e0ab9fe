namespace KvmSharp.Devices.Virtio;

/// <summary>Bits of the device status field (linux/virtio_config.h).</summary>
[Flags]
public enum VirtioDeviceStatus : byte
{
    ACKNOWLEDGE = 1,
    DRIVER = 2,
    DRIVER_OK = 4,
    FEATURES_OK = 8,
    DEVICE_NEEDS_RESET = 0x40,
    FAILED = 0x80,
}
