using KvmSharp.Devices.Events;
using KvmSharp.Devices.Interrupts;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using System.Runtime.InteropServices;

namespace KvmSharp.Vmm.Devices;

/// <summary>
/// MSI vectors on KVM: each vector gets a GSI and an eventfd registered with KVM_IRQFD, so
/// <see cref="IMsiVector.Trigger"/> is one eventfd write (allocation-free, any thread) and the kernel
/// injects the message the GSI routes to. KVM_SET_GSI_ROUTING replaces the whole table, so this class
/// keeps all of it: the in-kernel irqchip's default routes for GSIs 0-23 (PIC and IOAPIC, which
/// KVM_IRQ_LINE for the 16550 and i8042 relies on) followed by one MSI route per programmed vector.
/// The table lives in native memory sized at allocation, so <see cref="IMsiVector.Update"/> (a guest
/// write to an MSI-X table, on a vCPU thread) allocates nothing.
/// </summary>
public sealed unsafe class KvmMsiController : IMsiController, IDisposable
{
    private readonly KvmVm _vm;
    private readonly Func<uint> _allocateGsi;
    private readonly Lock _lock = new();
    private readonly List<Vector> _vectors = new();
    private kvm_irq_routing* _table;
    private int _capacity;

    /// <param name="allocateGsi">Hands out GSIs above the irqchip's 24 (the machine's allocator).</param>
    public KvmMsiController(KvmVm vm, Func<uint> allocateGsi)
    {
        _vm = vm;
        _allocateGsi = allocateGsi;
        lock (_lock)
        {
            EnsureCapacity(DefaultRouteCount);
            Publish();
        }
    }

    /// <summary>Routes KVM installs itself when the irqchip is created: GSIs 0-15 to the PICs and the IOAPIC, 16-23 to the IOAPIC.</summary>
    public const int DefaultRouteCount = 16 * 2 + 8;

    /// <summary>Vectors allocated and not disposed.</summary>
    public int VectorCount
    {
        get { lock (_lock) return _vectors.Count; }
    }

    /// <summary>Routes in the table KVM has now (defaults plus programmed vectors).</summary>
    public int RouteCount { get; private set; }

    public IMsiVector AllocateVector()
    {
        lock (_lock)
        {
            uint gsi = _allocateGsi();
            var eventFd = EventFd.Create();
            try
            {
                _vm.AssignIrqfd(eventFd, gsi);
            }
            catch
            {
                eventFd.Dispose();
                throw;
            }
            var vector = new Vector(this, gsi, eventFd);
            _vectors.Add(vector);
            EnsureCapacity(DefaultRouteCount + _vectors.Count);
            return vector;
        }
    }

    private void EnsureCapacity(int routes)
    {
        if (routes <= _capacity) return;
        int capacity = Math.Max(routes, _capacity * 2);
        var table = (kvm_irq_routing*)NativeMemory.AllocZeroed((nuint)(sizeof(kvm_irq_routing) + capacity * sizeof(kvm_irq_routing_entry)));
        NativeMemory.Free(_table);
        _table = table;
        _capacity = capacity;
    }

    // Rewrite the table in place and hand it to KVM; callers hold the lock.
    private void Publish()
    {
        var entries = (kvm_irq_routing_entry*)(_table + 1);
        int n = 0;
        for (uint gsi = 0; gsi < KvmIrqRouting.KVM_IOAPIC_NUM_PINS; gsi++)
        {
            if (gsi < 16)
            {
                entries[n++] = Irqchip(gsi, gsi < 8 ? KvmIrqRouting.KVM_IRQCHIP_PIC_MASTER : KvmIrqRouting.KVM_IRQCHIP_PIC_SLAVE, gsi % 8);
            }
            entries[n++] = Irqchip(gsi, KvmIrqRouting.KVM_IRQCHIP_IOAPIC, gsi);
        }
        foreach (var vector in _vectors)
        {
            if (!vector.Programmed) continue;
            entries[n++] = new kvm_irq_routing_entry
            {
                gsi = vector.Gsi,
                type = KvmIrqRouting.KVM_IRQ_ROUTING_MSI,
                msi = new kvm_irq_routing_msi { address_lo = (uint)vector.Address, address_hi = (uint)(vector.Address >> 32), data = vector.Data },
            };
        }
        _table->nr = (uint)n;
        _table->flags = 0;
        int result = _vm.TrySetGsiRouting(_table);
        if (result < 0) throw new KvmException("KVM_SET_GSI_ROUTING", -result, $"{n} routes");
        RouteCount = n;
    }

    private static kvm_irq_routing_entry Irqchip(uint gsi, uint chip, uint pin) => new()
    {
        gsi = gsi,
        type = KvmIrqRouting.KVM_IRQ_ROUTING_IRQCHIP,
        irqchip = new kvm_irq_routing_irqchip { irqchip = chip, pin = pin },
    };

    private void Update(Vector vector, ulong address, uint data)
    {
        lock (_lock)
        {
            if (vector.Disposed) return;
            if (vector.Programmed && vector.Address == address && vector.Data == data) return; // unchanged: spare KVM an SRCU sync
            vector.Address = address;
            vector.Data = data;
            vector.Programmed = true;
            Publish();
        }
    }

    private void Release(Vector vector)
    {
        lock (_lock)
        {
            if (vector.Disposed) return;
            vector.Disposed = true;
            _vectors.Remove(vector);
            if (_table is not null)
            {
                try
                {
                    _vm.DeassignIrqfd(vector.EventFd, vector.Gsi);
                }
                catch (ObjectDisposedException)
                {
                    // The VM is gone, and its irqfds with it.
                }
                if (vector.Programmed) Publish();
            }
            vector.EventFd.Dispose();
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var vector in _vectors)
            {
                vector.Disposed = true;
                vector.EventFd.Dispose();
            }
            _vectors.Clear();
            NativeMemory.Free(_table);
            _table = null;
        }
    }

    private sealed class Vector(KvmMsiController owner, uint gsi, EventFd eventFd) : IMsiVector
    {
        public readonly uint Gsi = gsi;
        public readonly EventFd EventFd = eventFd;
        public ulong Address;
        public uint Data;
        public bool Programmed;
        public volatile bool Disposed;

        public void Trigger()
        {
            if (!Disposed) EventFd.Signal();
        }

        public void Update(ulong messageAddress, uint messageData) => owner.Update(this, messageAddress, messageData);

        public void Dispose() => owner.Release(this);
    }
}
