using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>What <see cref="FirstVmLaunch"/> made: the console (when it opened), and the VM (when created, not yet started).</summary>
public sealed record FirstVm(StreamSerialSink? Console, ExpectSerialSink? Capture, ISerialSink? Sink, VirtualMachine? Machine, Exception? Failure);
