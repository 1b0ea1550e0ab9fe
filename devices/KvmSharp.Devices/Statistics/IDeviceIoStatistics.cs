namespace KvmSharp.Devices.Statistics;

/// <summary>A device that counts its I/O (<see cref="DeviceIoCounters"/>); the VM's metrics report it per device.</summary>
public interface IDeviceIoStatistics
{
    DeviceIoCounters Io { get; }
}
