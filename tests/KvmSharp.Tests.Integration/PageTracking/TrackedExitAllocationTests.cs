using Iced.Intel;
using KvmSharp.Devices.Bus;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// The tracked-page exit path allocates nothing on the vCPU thread: merged 16-byte stores (with their
/// completion probe), locked read-modify-writes done atomically at their read, and plain reads of an
/// access-trapped page, thousands of each, with a notifier that allocates nothing either.
/// </summary>
public sealed class TrackedExitAllocationTests
{
    private const ulong Page = 0x300000;
    private const ushort ProbePort = 0xE4;
    private const int Rounds = 500;

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

    private sealed class CountingNotifier : IPageTrackNotifier
    {
        public long Writes;
        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes) => Interlocked.Increment(ref Writes);
        public void TrackRemoveRegion(ulong gfn, ulong pageCount)
        {
        }
    }

    [KvmFact]
    public void Merged_stores_atomic_updates_and_trapped_reads_allocate_nothing()
    {
        void Round(Assembler a)
        {
            a.movdqu(__xmmword_ptr[rbx + 0x13], xmm0);   // two fragments, one report
            a.@lock.inc(__qword_ptr[rbx + 0x40]);        // atomic at its read
            a.mov(eax, 1);
            a.@lock.xadd(__dword_ptr[rbx + 0x80], eax);
            a.mov(rdx, __qword_ptr[rbx + 0x40]);         // a plain read
        }
        var image = TestGuest.LongMode(a =>
        {
            var warm = a.CreateLabel();
            var loop = a.CreateLabel();
            a.mov(rbx, Page);
            a.mov(ecx, 50);
            a.Label(ref warm);
            Round(a);
            a.dec(ecx);
            a.jnz(warm);
            a.@out((byte)ProbePort, al);
            a.mov(ecx, Rounds);
            a.Label(ref loop);
            Round(a);
            a.dec(ecx);
            a.jnz(loop);
            a.@out((byte)ProbePort, al);
            TestGuest.ExitWith(a, 0);
        });
        using var vm = TestGuest.Create(image, memory: 8UL << 20);
        var probe = new AllocationProbe();
        vm.PortBus.Register(ProbePort, 1, probe, "allocation-probe");
        var notifier = new CountingNotifier();
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(Page >> 12, TrackingMode.TrapAccesses);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(120)));
        Assert.Equal(2, probe.Count);
        Assert.Equal(3L * (Rounds + 50), notifier.Writes);
        Assert.Equal((ulong)(Rounds + 50), vm.Memory.ReadUInt64(Page + 0x40));
        Assert.Equal(0, probe.Samples[1] - probe.Samples[0]);
    }
}
