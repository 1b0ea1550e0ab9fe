using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Tests.Unit.Devices.Pci;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

/// <summary>A virtio-pci function on a root bus, with fake MSI, event loop, doorbell registrar and device.</summary>
internal sealed class VirtioPciRig
{
    public VirtioPciRig(FakeVirtioDevice? device = null, bool acceptDoorbells = true, bool withIntx = false, Microsoft.Extensions.Logging.ILogger<VirtioPciFunction>? logger = null, string? name = null)
    {
        Device = device ?? new FakeVirtioDevice();
        Registrar = new FakeNotifyRegistrar(acceptDoorbells);
        Intx = withIntx ? new RecordingInterruptLine() : null;
        Function = new VirtioPciFunction(Device, Msi, new NoGuestMemory(), Loop, Registrar, logger, Intx, name);
        Slot = Pci.Root.Attach(Function).Device;
    }

    public PciRig Pci { get; } = new();

    public FakeMsiController Msi { get; } = new();

    public FakeEventLoop Loop { get; } = new();

    public FakeNotifyRegistrar Registrar { get; }

    public RecordingInterruptLine? Intx { get; }

    public FakeVirtioDevice Device { get; }

    public VirtioPciFunction Function { get; }

    public int Slot { get; }
}
