using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Events;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Integration.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;
using KvmSharp.Vmm.Devices;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Integration.Seams;

/// <summary>The KVM-backed seams on the real /dev/kvm: ioeventfd doorbells, irqfd MSI vectors, the GSI routing table.</summary>
public sealed class KvmSeamTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    private sealed class CountingDevice : IBusDevice
    {
        public int Writes;
        public void Read(ulong offset, Span<byte> data) => data.Clear();
        public void Write(ulong offset, ReadOnlySpan<byte> data) => Interlocked.Increment(ref Writes);
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_IOEVENTFD)]
    public void A_doorbell_write_signals_its_ioeventfd_on_the_event_loop_without_an_mmio_exit()
    {
        using var vm = InterruptGuest.Create();
        using var loop = new EpollEventLoop(NullLogger<EpollEventLoop>.Instance, "seam-io");
        var registrar = KvmGuestNotifyRegistrar.TryCreate(vm.Kvm, loop);
        Assert.NotNull(registrar);
        var onMmioBus = new CountingDevice();
        vm.MmioBus.Register(InterruptGuest.Doorbell, 4, onMmioBus, "doorbell");
        var ready = new SignalPort();
        vm.PortBus.Register(InterruptGuest.ReadyPort, 1, ready, "ready");
        string? notifyThread = null;
        using var notified = new ManualResetEventSlim();
        using var registration = registrar.RegisterMmioNotify(InterruptGuest.Doorbell, 4, () =>
        {
            notifyThread = Thread.CurrentThread.Name;
            notified.Set();
        });

        vm.Start();
        try
        {
            Assert.True(ready.WaitFor(InterruptGuest.ReadyByte, Wait), "the guest never got ready");
            Assert.True(notified.Wait(Wait), "the doorbell's eventfd never fired");
            Assert.Equal("seam-io", notifyThread);
            Assert.Equal(0, Volatile.Read(ref onMmioBus.Writes)); // KVM took the write: no MMIO exit reached the bus
            Assert.Equal(0, vm.MmioBus.UnhandledWrites);
        }
        finally
        {
            vm.Stop("test done");
            vm.WaitForExit(Wait, out _);
        }
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_IRQFD)]
    public void A_doorbell_answered_by_an_msi_vector_interrupts_the_guest_through_irqfd_and_its_gsi_route()
    {
        using var vm = InterruptGuest.Create();
        using var loop = new EpollEventLoop(NullLogger<EpollEventLoop>.Instance, "seam-io");
        uint nextGsi = 24;
        using var msi = new KvmMsiController(vm.Kvm, () => nextGsi++);
        var registrar = KvmGuestNotifyRegistrar.TryCreate(vm.Kvm, loop)!;
        using var vector = msi.AllocateVector();
        vector.Trigger(); // before Update there is no route: dropped, not delivered
        vector.Update(InterruptGuest.MsiAddress, InterruptGuest.MsiVector);
        Assert.Equal(KvmMsiController.DefaultRouteCount + 1, msi.RouteCount);
        using var registration = registrar.RegisterMmioNotify(InterruptGuest.Doorbell, 4, vector.Trigger);

        var outcome = TestGuest.RunToEnd(vm, Wait);
        Assert.Equal(VmOutcome.GuestExit(InterruptGuest.MsiVector), outcome);
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_IRQFD)]
    public void The_irqchip_routes_survive_set_gsi_routing_so_a_kvm_irq_line_still_reaches_the_ioapic()
    {
        using var vm = InterruptGuest.Create();
        uint nextGsi = 24;
        using var msi = new KvmMsiController(vm.Kvm, () => nextGsi++);
        using var vector = msi.AllocateVector();
        vector.Update(InterruptGuest.MsiAddress, InterruptGuest.MsiVector); // the table now holds an MSI route too
        var ready = new SignalPort();
        vm.PortBus.Register(InterruptGuest.ReadyPort, 1, ready, "ready");

        vm.Start();
        Assert.True(ready.WaitFor(InterruptGuest.ReadyByte, Wait), "the guest never got ready");
        var line = new KvmIrqLine(vm.Kvm, InterruptGuest.IoApicPin); // what the 16550 drives
        line.SetLevel(true);
        line.SetLevel(false);
        Assert.True(vm.WaitForExit(Wait, out var outcome), "the IOAPIC interrupt never arrived");
        Assert.Equal(VmOutcome.GuestExit(InterruptGuest.IoApicVector), outcome);
    }

    [KvmFact(Requires = KvmCap.KVM_CAP_SIGNAL_MSI)]
    public void Signal_msi_is_delivered_once_the_guest_enabled_its_lapic()
    {
        using var vm = InterruptGuest.Create();
        uint nextGsi = 24;
        using var msi = new KvmMsiController(vm.Kvm, () => nextGsi++);
        var ready = new SignalPort();
        vm.PortBus.Register(InterruptGuest.ReadyPort, 1, ready, "ready");
        vm.Start();
        Assert.True(ready.WaitFor(InterruptGuest.ReadyByte, Wait), "the guest never got ready");
        int delivered = vm.Kvm.TrySignalMsi(InterruptGuest.MsiAddress, InterruptGuest.MsiVector);
        Assert.True(delivered > 0, $"KVM_SIGNAL_MSI returned {delivered}");
        Assert.True(vm.WaitForExit(Wait, out var outcome));
        Assert.Equal(VmOutcome.GuestExit(InterruptGuest.MsiVector), outcome);
    }

    [KvmFact]
    public void Kvm_refuses_an_irqfd_for_a_closed_descriptor_with_errno_and_operation()
    {
        using var vm = InterruptGuest.Create();
        var eventFd = EventFd.Create();
        eventFd.Dispose();
        var error = Assert.Throws<ObjectDisposedException>(() => vm.Kvm.AssignIrqfd(eventFd, 30));
        using var live = EventFd.Create();
        vm.Kvm.AssignIrqfd(live, 30);
        var twice = Assert.Throws<KvmSharp.Kvm.KvmException>(() => vm.Kvm.AssignIrqfd(live, 30));
        Assert.Equal("KVM_IRQFD", twice.Operation);
        Assert.Equal(Errno.EBUSY, twice.Errno);
        vm.Kvm.DeassignIrqfd(live, 30);
        Assert.NotNull(error);
    }
}
