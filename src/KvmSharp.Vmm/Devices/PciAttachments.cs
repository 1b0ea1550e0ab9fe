using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Statistics;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Console;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Vmm.Boot.Acpi;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Statistics;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Vmm.Devices;

/// <summary>
/// Attach steps for PCI: the root (host bridge, configuration ports 0xCF8-0xCFF, ECAM, BARs from the
/// machine's windows, described to the guest by MCFG and the DSDT) and virtio-pci functions on it.
/// </summary>
public static class PciAttachments
{
    /// <summary>PCI bus 0: its configuration ports replace the quiet "pci-config" ports of the PC legacy devices.</summary>
    public static readonly DeviceAttachment Root = new("pci-root", machine =>
    {
        if (machine.PciBus is not null) throw new InvalidOperationException("the machine already has a PCI root");
        var root = new PciRootBus(machine.MmioBus, new ResourceBarAllocator(machine.Resources));
        if (machine.Machine.QuietPorts?.Windows.FirstOrDefault(w => w.BasePort == PciRootBus.ConfigPortsBase) is { } quiet)
            machine.PortBus.Unregister(quiet);
        machine.PortBus.Register(PciRootBus.ConfigPortsBase, PciRootBus.ConfigPortsLength, root.ConfigPorts, "pci-conf1");
        if (root.Ecam.Size != machine.Resources.Ecam.Size)
            throw new InvalidOperationException($"the PCI root decodes 0x{root.Ecam.Size:x} bytes of ECAM, the machine reserved {machine.Resources.Ecam}");
        machine.MmioBus.Register(machine.Resources.Ecam.Start, root.Ecam.Size, root.Ecam, "pci-ecam");
        machine.Own(root.HostBridge);
        machine.PciBus = root;
        machine.PciRoot = AcpiPciRoot.From(machine.Resources);
    });

    /// <summary>
    /// A virtio-console whose port 0 (hvc0) writes to the VM's serial sink and, when <paramref name="takesConsoleInput"/>,
    /// takes the typed input instead of the 16550; <paramref name="ports"/> are its named ports, opened here.
    /// </summary>
    public static DeviceAttachment VirtioConsole(IReadOnlyList<ConsolePortSpec>? ports = null, bool takesConsoleInput = true, string name = "virtio-console") => Virtio(name, machine =>
    {
        var opened = new List<VirtioConsolePort>();
        try
        {
            foreach (var spec in ports ?? []) opened.Add(spec.Open());
        }
        catch
        {
            foreach (var port in opened) port.Dispose();
            throw;
        }
        var console = new KvmSharp.Devices.Virtio.Console.VirtioConsole(machine.Config.SerialSink, opened,
            machine.LoggerFactory.CreateLogger<KvmSharp.Devices.Virtio.Console.VirtioConsole>());
        if (takesConsoleInput) machine.ConsoleInput = new VirtioConsoleInput(console);
        return console;
    });

    /// <summary>A virtio-pci function for the device <paramref name="create"/> makes, in the next free slot (after <see cref="Root"/>).</summary>
    public static DeviceAttachment Virtio(string name, Func<MachineContext, IVirtioDevice> create) => new(name, machine =>
    {
        var bus = machine.PciBus ?? throw new InvalidOperationException($"{name} needs the PCI root attached first");
        var device = create(machine);
        VirtioPciFunction function;
        try
        {
            function = new VirtioPciFunction(device, machine.Msi, machine.DeviceMemory, machine.EventLoop, machine.NotifyRegistrar,
                machine.LoggerFactory.CreateLogger<VirtioPciFunction>(), intx: null, name);
        }
        catch
        {
            device.Dispose();
            throw;
        }
        machine.Own(function); // disposes the device too
        bus.Attach(function);
        if (device is IDeviceIoStatistics counted) machine.DeviceIo.Add(new DeviceIoSource(name, device.DeviceType.ToString().ToLowerInvariant(), counted.Io));
    });
}
