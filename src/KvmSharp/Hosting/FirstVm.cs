using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>What <see cref="FirstVmLaunch"/> made: the console (when it opened), the VM (when created) and whether it runs.</summary>
public sealed record FirstVm(StreamSerialSink? Console, ExpectSerialSink? Capture, ISerialSink? Sink, VirtualMachine? Machine, bool Started, Exception? Failure);
