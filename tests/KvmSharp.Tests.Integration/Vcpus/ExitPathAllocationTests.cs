using KvmSharp.Devices.Bus;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Vcpus;

/// <summary>The vCPU exit path allocates nothing: measured on the vCPU thread across thousands of real exits.</summary>
public sealed class ExitPathAllocationTests
{
    private const ushort ProbePort = 0xE4, NullPort = 0xE8;
    private const int Exits = 5000;

    /// <summary>Records the vCPU thread's allocation counter each time the guest writes to it.</summary>
    private sealed class AllocationProbe : IBusDevice
    {
        public readonly long[] Samples = new long[4];
        public int Count;

        public void Read(ulong offset, Span<byte> data) => data.Clear();

        public void Write(ulong offset, ReadOnlySpan<byte> data)
        {
            if (Count < Samples.Length) Samples[Count++] = GC.GetAllocatedBytesForCurrentThread();
        }
    }

    private sealed class NullDevice : IBusDevice
    {
        public long Writes;
        public void Read(ulong offset, Span<byte> data) => data.Fill(0x5A);
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Writes++;
    }

    [KvmFact]
    public void Thousands_of_port_and_mmio_exits_allocate_nothing_on_the_vcpu_thread()
    {
        var image = TestGuest.LongMode(a =>
        {
            var warm = a.CreateLabel();
            var loop = a.CreateLabel();
            // Warm-up exits first (JIT, first-call paths), then sample, run the measured exits, sample again.
            a.mov(ecx, 200);
            a.Label(ref warm);
            a.@out((byte)NullPort, al);
            a.dec(ecx);
            a.jnz(warm);
            a.@out((byte)ProbePort, al);
            a.mov(ecx, Exits);
            a.mov(rbx, 0xD000_0000UL);
            a.Label(ref loop);
            a.@out((byte)NullPort, al);
            a.@in(al, (byte)NullPort);
            a.mov(__dword_ptr[rbx], eax);
            a.mov(eax, __dword_ptr[rbx]);
            a.dec(ecx);
            a.jnz(loop);
            a.@out((byte)ProbePort, al);
            TestGuest.ExitWith(a, 0);
        });
        using var vm = TestGuest.Create(image);
        var probe = new AllocationProbe();
        var sink = new NullDevice();
        var mmio = new NullDevice();
        vm.PortBus.Register(ProbePort, 1, probe, "allocation-probe");
        vm.PortBus.Register(NullPort, 1, sink, "null");
        vm.MmioBus.Register(0xD000_0000UL, 0x1000, mmio, "null-mmio");

        var outcome = TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(60));

        Assert.Equal(VmOutcome.GuestExit(0), outcome);
        Assert.Equal(2, probe.Count);
        Assert.Equal(200 + Exits, sink.Writes);
        Assert.Equal(Exits, mmio.Writes);
        Assert.True(vm.Vcpus[0].ExitCount >= 4 * Exits, $"only {vm.Vcpus[0].ExitCount} exits");
        Assert.Equal(0, probe.Samples[1] - probe.Samples[0]);
    }
}
