using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Interrupts;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Pci;
using KvmSharp.Kvm;
using KvmSharp.Vmm.Boot.Acpi;
using KvmSharp.Vmm.Devices;
using KvmSharp.Vmm.Machine.Allocation;
using KvmSharp.Vmm.Memory;
using KvmSharp.Vmm.Statistics;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Vmm.Machine;

/// <summary>
/// What an attach step works with: the buses, the allocator, interrupts (ISA lines, MSI vectors),
/// the event loop and doorbells, guest memory for devices, and the machine's teardown. The event
/// loop and the MSI controller are made on first use, so a VM without such devices has neither.
/// </summary>
public sealed class MachineContext
{
    private readonly List<IDisposable> _owned = new();
    private EpollEventLoop? _eventLoop;
    private KvmMsiController? _msi;
    private KvmGuestNotifyRegistrar? _notify;
    private bool _notifyProbed;

    internal MachineContext(VirtualMachine machine, ILoggerFactory loggerFactory)
    {
        Machine = machine;
        LoggerFactory = loggerFactory;
        Resources = new MachineResources(machine.Config.MemoryBytes);
        DeviceMemory = new DeviceGuestMemory(machine.Memslots, machine.DirtyLog, machine.PageTracker);
    }

    /// <summary>The VM being built (its public properties for the standard devices).</summary>
    public VirtualMachine Machine { get; }
    public VmConfig Config => Machine.Config;
    public KvmVm Kvm => Machine.Kvm;
    public DeviceBus PortBus => Machine.PortBus;
    public DeviceBus MmioBus => Machine.MmioBus;
    public bool HasIrqchip => Machine.HasIrqchip;
    public ILoggerFactory LoggerFactory { get; }

    /// <summary>Address windows, ports, GSIs and PCI slots for devices.</summary>
    public MachineResources Resources { get; }

    /// <summary>Guest RAM (address space 0) for DMA: bounds-checked, writes marked dirty and reported to page tracking.</summary>
    public IGuestMemory DeviceMemory { get; }

    /// <summary>The PCI root an attach step put on the machine, described to the guest in ACPI (MCFG, DSDT root bridge).</summary>
    public AcpiPciRoot? PciRoot { get; set; }

    /// <summary>Where typed console bytes go when not to the 16550 (a virtio-console's hvc0).</summary>
    public KvmSharp.Devices.Serial.IConsoleInput? ConsoleInput { get; set; }

    /// <summary>PCI bus 0, once <see cref="PciAttachments.Root"/> attached it.</summary>
    public PciRootBus? PciBus { get; set; }

    /// <summary>The devices that count their I/O, by attachment name, for the VM's metrics (written while attaching only).</summary>
    public List<DeviceIoSource> DeviceIo { get; } = new();

    /// <summary>The VM's I/O thread ("vm-io"), started on first use and stopped when the VM is disposed.</summary>
    public IEventLoop EventLoop => _eventLoop ??= new EpollEventLoop(LoggerFactory.CreateLogger<EpollEventLoop>(), "vm-io");

    /// <summary>The event loop if something has started it (progress checks must not start one).</summary>
    internal IEventLoop? StartedEventLoop => _eventLoop;

    /// <summary>MSI vectors over GSI routing and irqfds (needs the in-kernel irqchip).</summary>
    public IMsiController Msi
    {
        get
        {
            if (!HasIrqchip) throw new InvalidOperationException("MSI needs the in-kernel irqchip (a Linux guest, or VmConfig.Irqchip)");
            return _msi ??= new KvmMsiController(Kvm, () => Resources.Gsis.Allocate("msi vector"));
        }
    }

    /// <summary>Doorbells through KVM_IOEVENTFD and the event loop, or null when this KVM has no ioeventfds.</summary>
    public IGuestNotifyRegistrar? NotifyRegistrar
    {
        get
        {
            if (!_notifyProbed)
            {
                _notify = KvmGuestNotifyRegistrar.TryCreate(Kvm, EventLoop);
                _notifyProbed = true;
            }
            return _notify;
        }
    }

    /// <summary>An ISA interrupt line (KVM_IRQ_LINE on the in-kernel irqchip).</summary>
    public IInterruptLine IrqLine(uint gsi) => new KvmIrqLine(Kvm, gsi);

    /// <summary>End the VM (first caller wins).</summary>
    public void End(VmOutcome outcome) => Machine.End(outcome);

    /// <summary>Dispose <paramref name="device"/> with the VM: after the vCPUs and the event loop stopped, in reverse order of registration.</summary>
    public T Own<T>(T device) where T : IDisposable
    {
        _owned.Add(device);
        return device;
    }

    internal void Dispose()
    {
        _eventLoop?.Dispose();
        for (int i = _owned.Count - 1; i >= 0; i--)
        {
            try
            {
                _owned[i].Dispose();
            }
            catch (Exception e) when (e is IOException or InvalidOperationException or ObjectDisposedException)
            {
                // Teardown goes on: one device failing to close must not leak the rest.
            }
        }
        _msi?.Dispose();
    }
}
