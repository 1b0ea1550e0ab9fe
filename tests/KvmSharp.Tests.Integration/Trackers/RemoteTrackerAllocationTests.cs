using Iced.Intel;
using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Trackers.Remote;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Trackers;

/// <summary>A tracked write reported to a synchronous out-of-process tracker (append, doorbell, wait for the ack) allocates nothing on the vCPU thread.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class RemoteTrackerAllocationTests
{
    private const ulong Page = 0x300000;
    private const ushort ProbePort = 0xE4;
    private const int Writes = 500;

    private sealed class AllocationProbe : IBusDevice
    {
        public readonly long[] Samples = new long[2];
        public int Count;
        public void Read(ulong offset, Span<byte> data) => data.Clear();
        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (Count < Samples.Length) Samples[Count++] = GC.GetAllocatedBytesForCurrentThread();
        }
    }

    [KvmGccFact]
    public void Synchronous_out_of_process_tracked_writes_allocate_nothing_on_the_vcpu_thread()
    {
        static void Loop(Assembler a, int count)
        {
            var loop = a.CreateLabel();
            a.mov(ecx, count);
            a.Label(ref loop);
            a.mov(__qword_ptr[rbx], rcx);
            a.dec(ecx);
            a.jnz(loop);
        }
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 8UL << 20, Image = TestGuest.LongMode(a =>
            {
                a.mov(rbx, Page);
                Loop(a, 50);                      // warm up
                a.@out((byte)ProbePort, al);
                Loop(a, Writes);
                a.@out((byte)ProbePort, al);
                TestGuest.ExitWith(a, 0);
            }),
            SerialSink = new Devices.Serial.CapturingSerialSink(), MemfdBacking = true,
        });
        var probe = new AllocationProbe();
        vm.PortBus.Register(ProbePort, 1, probe, "allocation-probe");
        string socket = Path.Combine(Path.GetTempPath(), $"kvmsharp-alloc-{Guid.NewGuid():N}.sock");
        using var server = RemoteTrackerServer.Start(vm, socket);
        // Every other ack after the vCPU has blocked: both the spin and the eventfd wait are measured.
        using var tracker = TrackerProcess.C(socket, Page >> 12, 1, synchronous: true, "quiet", "spin=0");
        tracker.WaitForStderr("tracking", TimeSpan.FromSeconds(60));

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(120)));
        server.Dispose();
        Assert.Equal(0, tracker.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains($"writes={50 + Writes}", tracker.Lines);
        Assert.Equal(2, probe.Count);
        Assert.Equal(0, probe.Samples[1] - probe.Samples[0]);
        Assert.All(server.Detachments, d => Assert.Contains("the VM ended", d));
    }
}
