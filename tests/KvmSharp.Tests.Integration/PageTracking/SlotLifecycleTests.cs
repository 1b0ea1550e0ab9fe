using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>DELETE, MOVE and FLAGS_ONLY of a slot with tracked pages, on the real /dev/kvm.</summary>
public sealed class SlotLifecycleTests
{
    private const ushort Slot = 7;
    private const ulong Gpa = 0x0800_0000, Size = 0x10000, MovedGpa = 0x0900_0000;

    private static (VirtualMachine Vm, GuestMemoryRegion Region, RecordingNotifier Notifier) Build(PageTrackOptions? options = null, Action<Iced.Intel.Assembler>? code = null)
    {
        var image = TestGuest.LongMode(code ?? (a => TestGuest.ExitWith(a, 0)));
        var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 4UL << 20, Image = image, SerialSink = new Devices.Serial.CapturingSerialSink(), PageTracking = (options ?? new PageTrackOptions()) with { DefaultMode = TrackingMode.TrapWrites }, // these count read-only carves
        });
        var region = GuestMemoryRegion.CreateAnonymous(Size, "tracked-slot");
        vm.Memslots.Apply(MemslotRequest.Create(Slot, Gpa, Size, region.HostAddress));
        var notifier = new RecordingNotifier(vm.Memory);
        vm.PageTracker.Register(notifier);
        vm.PageTracker.AddGfn((Gpa >> 12) + 2);
        vm.PageTracker.AddGfn((Gpa >> 12) + 3);
        return (vm, region, notifier);
    }

    [KvmFact]
    public void Delete_reports_the_region_once_after_the_kernel_accepted_it()
    {
        var (vm, region, notifier) = Build();
        using (vm)
        using (region)
        {
            Assert.Equal(3, vm.KernelSlots.PiecesOf(Slot).Count); // untracked, tracked run (2 pages), untracked
            int kernelSlotsBefore = vm.KernelSlots.KernelSlotCount;
            vm.Memslots.Apply(MemslotRequest.Delete(Slot));

            Assert.Equal([(Gpa >> 12, Size >> 12)], notifier.Removals);
            Assert.Equal(kernelSlotsBefore - 3, vm.KernelSlots.KernelSlotCount);
            Assert.Equal(0, vm.PageTracker.Count((Gpa >> 12) + 2));
            Assert.Throws<PageTrackException>(() => vm.PageTracker.AddGfn((Gpa >> 12) + 2));
        }
    }

    [KvmFact]
    public void A_refused_delete_notifies_nothing_and_changes_nothing()
    {
        var (vm, region, notifier) = Build();
        using (vm)
        using (region)
        {
            var before = vm.Memslots.Current;
            var missing = Assert.Throws<MemslotRefusedException>(() => vm.Memslots.Apply(MemslotRequest.Delete(Slot + 1)));
            Assert.Equal(Errno.EINVAL, missing.Errno);
            var vetoed = new VetoDeletes();
            vm.Memslots.AddObserver(vetoed);
            var veto = Assert.Throws<MemslotRefusedException>(() => vm.Memslots.Apply(MemslotRequest.Delete(Slot)));
            Assert.Equal(Errno.EBUSY, veto.Errno);

            Assert.Empty(notifier.Removals);
            Assert.Same(before, vm.Memslots.Current);
            Assert.Equal(1, vm.PageTracker.Count((Gpa >> 12) + 2));
            Assert.Equal(3, vm.KernelSlots.PiecesOf(Slot).Count);
        }
    }

    private sealed class VetoDeletes : IMemslotObserver
    {
        public int Prepare(in MemslotVerdict change, out string? reason)
        {
            reason = "test veto";
            return change.Kind == MemslotChangeKind.Delete ? Errno.EBUSY : 0;
        }

        public void Committed(in MemslotVerdict change, MemslotSnapshot published)
        {
        }
    }

    [KvmFact]
    public void Move_is_refused_while_a_notifier_is_registered()
    {
        var (vm, region, notifier) = Build();
        using (vm)
        using (region)
        {
            var before = vm.Memslots.Current;
            var error = Assert.Throws<MemslotRefusedException>(() => vm.Memslots.Apply(MemslotRequest.Create(Slot, MovedGpa, Size, region.HostAddress)));
            Assert.Equal(Errno.EINVAL, error.Errno);
            Assert.Contains("MOVE", error.Message);
            Assert.Same(before, vm.Memslots.Current);
            Assert.Empty(notifier.Removals);

            // Without notifiers the kernel's rule does not apply; the slot's counts go with the move.
            vm.PageTracker.Unregister(notifier);
            Assert.Equal(MemslotChangeKind.Move, vm.Memslots.Apply(MemslotRequest.Create(Slot, MovedGpa, Size, region.HostAddress)).Kind);
            Assert.Equal(0, vm.PageTracker.Count((MovedGpa >> 12) + 2));
            Assert.Single(vm.KernelSlots.PiecesOf(Slot));
        }
    }

    [KvmFact]
    public void With_the_opt_in_policy_a_move_is_reported_as_removal_of_the_old_region()
    {
        var (vm, region, notifier) = Build(new PageTrackOptions { AllowMoveWithNotifiers = true });
        using (vm)
        using (region)
        {
            Assert.Equal(MemslotChangeKind.Move, vm.Memslots.Apply(MemslotRequest.Create(Slot, MovedGpa, Size, region.HostAddress)).Kind);
            Assert.Equal([(Gpa >> 12, Size >> 12)], notifier.Removals);
            Assert.Single(vm.KernelSlots.PiecesOf(Slot));
            Assert.Equal(MovedGpa, vm.KernelSlots.PiecesOf(Slot)[0].GuestPhysAddr);
        }
    }

    [KvmFact]
    public void Flags_only_keeps_tracking_and_notifies_nothing_and_the_dirty_log_sees_tracked_writes()
    {
        var (vm, region, notifier) = Build(code: a =>
        {
            a.mov(rbx, Gpa);
            a.mov(__qword_ptr[rbx + 2 * 4096], 0x77);  // tracked
            a.mov(__qword_ptr[rbx + 5 * 4096], 0x88);  // untracked
            TestGuest.ExitWith(a, 0);
        });
        using (vm)
        using (region)
        {
            var change = vm.Memslots.Apply(MemslotRequest.Create(Slot, Gpa, Size, region.HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
            Assert.Equal(MemslotChangeKind.FlagsOnly, change.Kind);
            Assert.Equal(1, vm.PageTracker.Count((Gpa >> 12) + 2));
            Assert.Equal(3, vm.KernelSlots.PiecesOf(Slot).Count);
            Assert.All(vm.KernelSlots.PiecesOf(Slot), p => Assert.NotEqual(0u, p.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));

            Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
            Assert.Single(notifier.Writes);
            Assert.Empty(notifier.Removals);
            Assert.Equal((1UL << 2) | (1UL << 5), vm.Memslots.GetDirtyLog(Slot)[0]);
        }
    }
}
