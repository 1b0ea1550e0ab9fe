using KvmSharp.Devices.Statistics;

namespace KvmSharp.Vmm.Statistics;

/// <summary>One device's I/O counters as the metrics report them.</summary>
/// <param name="Device">The attachment's name ("virtio-blk-root"): the "device" tag.</param>
/// <param name="Type">The kind of device ("block", "console", "entropy"): the "type" tag.</param>
public sealed record DeviceIoSource(string Device, string Type, DeviceIoCounters Counters);
