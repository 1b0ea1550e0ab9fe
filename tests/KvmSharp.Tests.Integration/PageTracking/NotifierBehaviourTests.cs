using KvmSharp.Memory.PageTracking;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.PageTracking;

/// <summary>Notifiers that unregister themselves, and notifiers that throw, on the real /dev/kvm.</summary>
public sealed class NotifierBehaviourTests
{
    private const ulong Page = 0x300000;
    private const int Writes = 20;

    private static VirtualMachine WritingGuest(PageTrackOptions? options = null) =>
        VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 8UL << 20,
            SerialSink = new Devices.Serial.CapturingSerialSink(),
            PageTracking = options ?? new PageTrackOptions(),
            Image = TestGuest.LongMode(a =>
            {
                var loop = a.CreateLabel();
                a.mov(rbx, Page);
                a.mov(ecx, Writes);
                a.Label(ref loop);
                a.mov(__qword_ptr[rbx + rcx * 8], rcx);
                a.dec(ecx);
                a.jnz(loop);
                TestGuest.ExitWith(a, 0);
            }),
        });

    /// <summary>Unregisters itself from inside its first TrackWrite.</summary>
    private sealed class SelfRemovingNotifier(PageTracker tracker) : IPageTrackNotifier
    {
        public int Calls;
        public bool UnregisterReturned;

        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            Calls++;
            if (Calls == 1)
            {
                tracker.Unregister(this);
                UnregisterReturned = true;
            }
        }

        public void TrackRemoveRegion(ulong gfn, ulong pageCount)
        {
        }
    }

    private sealed class ThrowingNotifier : IPageTrackNotifier
    {
        public int Calls;

        public void TrackWrite(ulong gpa, ReadOnlySpan<byte> bytes)
        {
            Calls++;
            throw new InvalidOperationException("tracker bug");
        }

        public void TrackRemoveRegion(ulong gfn, ulong pageCount) => throw new InvalidOperationException("tracker bug");
    }

    [KvmFact]
    public void Unregistering_from_inside_its_own_hook_finishes_that_hook_and_it_is_the_last()
    {
        using var vm = WritingGuest();
        var self = new SelfRemovingNotifier(vm.PageTracker);
        var other = new RecordingNotifier();
        vm.PageTracker.Register(self);
        vm.PageTracker.Register(other);
        vm.PageTracker.AddGfn(Page >> 12);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(30)));
        Assert.True(self.UnregisterReturned);
        Assert.Equal(1, self.Calls);
        Assert.Equal(Writes, other.Writes.Count); // the other notifier, later in the list, still got every write
        Assert.Equal(1, vm.PageTracker.NotifierCount);
    }

    [KvmFact]
    public void A_throwing_notifier_is_isolated_logged_and_counted_and_the_vm_goes_on()
    {
        var log = new List<string>();
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 8UL << 20,
            SerialSink = new Devices.Serial.CapturingSerialSink(),
            Image = WritingGuest().Config.Image,
            Log = message => { lock (log) log.Add(message); },
        });
        var thrower = new ThrowingNotifier();
        var recorder = new RecordingNotifier();
        vm.PageTracker.Register(thrower);
        vm.PageTracker.Register(recorder);
        vm.PageTracker.AddGfn(Page >> 12);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));
        Assert.Equal(Writes, thrower.Calls);
        Assert.Equal(Writes, recorder.Writes.Count);
        Assert.Equal(Writes, vm.PageTracker.NotifierFaults);
        Assert.Contains(log, line => line.Contains("ThrowingNotifier threw from TrackWrite") && line.Contains("tracker bug"));
    }

    [KvmFact]
    public void The_stop_policy_ends_the_vm_on_the_first_notifier_fault()
    {
        using var vm = WritingGuest(new PageTrackOptions { OnNotifierFault = NotifierFaultPolicy.StopVm });
        var thrower = new ThrowingNotifier();
        vm.PageTracker.Register(thrower);
        vm.PageTracker.AddGfn(Page >> 12);

        var outcome = TestGuest.RunToEnd(vm);
        Assert.Equal(VmExitKind.Error, outcome.Kind);
        Assert.Contains("page-tracking policy", outcome.Summary);
        Assert.Equal(1, thrower.Calls);
    }
}
