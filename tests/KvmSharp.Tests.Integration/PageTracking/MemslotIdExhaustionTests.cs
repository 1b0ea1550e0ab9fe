using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>
/// Tracking never costs the user a memslot id: with tracked gfns carved out of a slot, the user can
/// still create a slot on every one of the kernel's ids (32,764 here); the carving coarsens to one
/// read-only piece, whose untracked pages are written by KvmSharp and not reported, and carves
/// finer again as soon as ids are free. Real KVM, a small guest assembled with Iced.
/// </summary>
public sealed class MemslotIdExhaustionTests(ITestOutputHelper output)
{
    private const ulong Page = 4096;
    private const ulong TestGpa = 0x1000_0000;       // 16 pages, identity-mapped by the long-mode setup
    private const ulong FillGpa = 0x1_0000_0000;     // fill slots, never touched by the guest
    private const ulong TrackedA = TestGpa + (2 * Page), Between = TestGpa + (3 * Page), TrackedB = TestGpa + (4 * Page), Tail = TestGpa + (10 * Page);

    [KvmFact]
    public void Every_id_the_kernel_has_can_be_created_with_tracking_active_and_untracked_writes_in_a_coarse_piece_are_not_reported()
    {
        using var vm = TestGuest.Create(TestGuest.LongMode(a =>
        {
            a.mov(rbx, TestGpa);
            a.mov(rax, 0x1111UL);
            a.mov(__qword_ptr[rbx + (int)(TrackedA - TestGpa)], rax);
            a.mov(rax, 0x2222UL);
            a.mov(__qword_ptr[rbx + (int)(Between - TestGpa)], rax);
            a.mov(rax, 0x3333UL);
            a.mov(__qword_ptr[rbx + (int)(TrackedB - TestGpa)], rax);
            a.mov(rax, 0x4444UL);
            a.mov(__qword_ptr[rbx + (int)(Tail - TestGpa)], rax);
            TestGuest.ExitWith(a, 0);
        }), memory: 8UL << 20);
        using var testRam = GuestMemoryRegion.CreateAnonymous(16 * Page, "tracked-slot");
        using var fillRam = GuestMemoryRegion.CreateAnonymous(Page, "fill");
        var limits = vm.Memslots.Limits;
        ushort testId = FreeId(vm.Memslots.Current, limits);
        vm.Memslots.Apply(MemslotRequest.Create(testId, TestGpa, 16 * Page, testRam.HostAddress));
        var notifier = new RecordingNotifier(vm.Memory);
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn(TrackedA >> 12, TrackingMode.TrapWrites);
        vm.PageTracker.AddGfn(TrackedB >> 12, TrackingMode.TrapWrites);
        Assert.Equal(5, vm.KernelSlots.PiecesOf(testId).Count); // head, tracked, between, tracked, tail
        Assert.Equal(4, vm.PageTracker.TrackingKernelSlots);

        // Every remaining id: the kernel would accept each CREATE on a VM without tracking, so KvmSharp must.
        var refused = new List<string>();
        int created = 0, coarsenedAt = -1;
        for (int id = 0; id < limits.SlotsPerAddressSpace; id++)
        {
            if (vm.Memslots.Current.FindById(0, (ushort)id) is not null) continue;
            var verdict = vm.Memslots.TryApply(MemslotRequest.Create((ushort)id, FillGpa + ((ulong)created * Page), Page, fillRam.HostAddress));
            if (!verdict.Accepted) refused.Add($"id {id}: {Errno.Name(verdict.Errno)} {verdict.Reason}");
            created++;
            if (coarsenedAt < 0 && vm.PageTracker.CoarsenedSlots > 0) coarsenedAt = vm.Memslots.Current.Count(0);
        }
        output.WriteLine($"created {created} slots; user slots {vm.Memslots.Current.Count(0)} of {limits.SlotsPerAddressSpace}; carving coarsened at {coarsenedAt} user slots");

        Assert.Empty(refused);
        Assert.Equal(limits.SlotsPerAddressSpace, vm.Memslots.Current.Count(0));
        Assert.Equal(limits.SlotsPerAddressSpace, vm.KernelSlots.KernelSlotCount);
        Assert.Equal(0, vm.PageTracker.TrackingKernelSlots);
        Assert.Equal(1, vm.PageTracker.CoarsenedSlots);
        var piece = Assert.Single(vm.KernelSlots.PiecesOf(testId));
        Assert.Equal((TestGpa, 16 * Page, KvmMemFlags.KVM_MEM_READONLY), (piece.GuestPhysAddr, piece.Size, piece.Flags));

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));

        // Every write reached memory; only the tracked gfns were reported.
        Assert.Equal([0x1111UL, 0x2222UL, 0x3333UL, 0x4444UL], new[] { TrackedA, Between, TrackedB, Tail }.Select(vm.Memory.ReadUInt64));
        Assert.Equal([(TrackedA, 0x1111UL), (TrackedB, 0x3333UL)], notifier.Writes.Select(w => (w.Gpa, BitConverter.ToUInt64(w.Bytes))));
        Assert.Equal(2, vm.PageTracker.TrackedWrites);

        // Ids freed: the carving is fine again.
        for (int i = 0; i < 4; i++)
        {
            var fill = vm.Memslots.Current.Slots(0).Last(s => s.GuestPhysAddr >= FillGpa);
            vm.Memslots.Apply(MemslotRequest.Delete(fill.Id));
        }
        Assert.Equal(5, vm.KernelSlots.PiecesOf(testId).Count);
        Assert.Equal(4, vm.PageTracker.TrackingKernelSlots);
        Assert.Equal(0, vm.PageTracker.CoarsenedSlots);
        Assert.Equal(limits.SlotsPerAddressSpace, vm.KernelSlots.KernelSlotCount);
    }

    private static ushort FreeId(MemslotSnapshot current, MemslotLimits limits)
    {
        for (int id = 1; id < limits.SlotsPerAddressSpace; id++)
            if (current.FindById(0, (ushort)id) is null) return (ushort)id;
        throw new InvalidOperationException("no free memslot id");
    }
}
