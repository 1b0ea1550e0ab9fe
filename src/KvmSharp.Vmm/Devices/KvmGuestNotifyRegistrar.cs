using KvmSharp.Devices.Events;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Devices;

/// <summary>
/// Guest doorbells through KVM_IOEVENTFD: KVM signals an eventfd for a guest write to the address
/// (the vCPU does not exit to userspace), and the event loop calls the device. Created only when the
/// host has KVM_CAP_IOEVENTFD (<see cref="TryCreate"/>).
/// </summary>
public sealed class KvmGuestNotifyRegistrar : IGuestNotifyRegistrar
{
    private readonly KvmVm _vm;
    private readonly IEventLoop _loop;

    private KvmGuestNotifyRegistrar(KvmVm vm, IEventLoop loop)
    {
        _vm = vm;
        _loop = loop;
    }

    /// <summary>A registrar, or null when this KVM has no ioeventfds (devices then take their doorbells on the MMIO bus).</summary>
    public static KvmGuestNotifyRegistrar? TryCreate(KvmVm vm, IEventLoop loop) =>
        vm.CheckExtension(KvmCap.KVM_CAP_IOEVENTFD) > 0 ? new KvmGuestNotifyRegistrar(vm, loop) : null;

    public IDisposable? RegisterMmioNotify(ulong address, int length, Action onNotify)
    {
        ArgumentNullException.ThrowIfNull(onNotify);
        if (length is not (1 or 2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(length), $"{length} bytes: an ioeventfd takes 1, 2, 4 or 8");
        var eventFd = EventFd.Create();
        IDisposable? watch = null;
        try
        {
            watch = _loop.Watch(eventFd, () =>
            {
                if (eventFd.TryConsume(out _)) onNotify();
            });
            _vm.AssignIoeventfd(eventFd, address, (uint)length);
            return new Registration(_vm, eventFd, watch, address, (uint)length);
        }
        catch
        {
            watch?.Dispose();
            eventFd.Dispose();
            throw;
        }
    }

    public IDisposable? RegisterMmioNotify(ulong address, int length, EventFd eventFd)
    {
        ArgumentNullException.ThrowIfNull(eventFd);
        if (length is not (1 or 2 or 4 or 8)) throw new ArgumentOutOfRangeException(nameof(length), $"{length} bytes: an ioeventfd takes 1, 2, 4 or 8");
        _vm.AssignIoeventfd(eventFd, address, (uint)length);
        return new ExternalRegistration(_vm, eventFd, address, (uint)length);
    }

    // An eventfd someone else reads (a vhost-user back end): no loop watch, and the caller keeps the eventfd.
    private sealed class ExternalRegistration(KvmVm vm, EventFd eventFd, ulong address, uint length) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            try
            {
                vm.DeassignIoeventfd(eventFd, address, length);
            }
            catch (ObjectDisposedException)
            {
                // The VM or the eventfd is gone, and the ioeventfd with it.
            }
        }
    }

    private sealed class Registration(KvmVm vm, EventFd eventFd, IDisposable watch, ulong address, uint length) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            try
            {
                vm.DeassignIoeventfd(eventFd, address, length);
            }
            catch (ObjectDisposedException)
            {
                // The VM is gone, and its ioeventfds with it.
            }
            watch.Dispose();
            eventFd.Dispose();
        }
    }
}
