using KvmSharp.Devices.Pci;
using KvmSharp.Vmm.Machine.Allocation;

namespace KvmSharp.Vmm.Devices;

/// <summary>PCI BARs placed from the machine's windows, the same ones the DSDT's root bridge _CRS lists.</summary>
public sealed class ResourceBarAllocator(MachineResources resources) : IPciBarAllocator
{
    public bool TryAllocate(PciBarWindow window, ulong size, ulong alignment, out ulong address)
    {
        var pool = window == PciBarWindow.Below4G ? resources.Mmio32 : resources.Mmio64;
        try
        {
            address = pool.Allocate(size, "pci bar", alignment).Start;
            return true;
        }
        catch (ResourceExhaustedException)
        {
            address = 0;
            return false;
        }
    }
}
