using KvmSharp.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

public sealed class PciBarMappingTests
{
    [Fact]
    public void A_bar_is_mapped_only_while_memory_decoding_is_on()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (2, 0x2000, false));
        int slot = rig.Root.Attach(function).Device;
        ulong address = function.BarProgrammedAddress(2);
        Assert.InRange(address, PciRig.Window32Base, PciRig.Window32Base + PciRig.Window32Size - 0x2000);
        Assert.Null(function.BarMappedAddress(2));
        Assert.False(rig.Mmio.Read(address + 0x10, new byte[4]));

        rig.EnableMemory(slot);
        Assert.Equal(address, function.BarMappedAddress(2));
        Assert.Equal(0x12121212u, rig.Mmio.Read32(address + 0x1ffc));
        Assert.Equal(0x1ffcul, function.Regions[2]!.LastOffset);

        rig.DisableMemory(slot);
        Assert.Null(function.BarMappedAddress(2));
        Assert.False(rig.Mmio.Read(address, new byte[4]));
    }

    [Fact]
    public void Moving_a_bar_moves_its_mapping_with_decoding_on_or_off()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x1000, true));
        int slot = rig.Root.Attach(function).Device;
        ulong old = function.BarProgrammedAddress(0);
        rig.EnableMemory(slot);

        // With decoding on, each half-write takes effect at once (Linux turns decoding off first; a guest need not).
        const ulong moved = 0x2_4000_0000;
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, (uint)(moved >> 32));
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0, unchecked((uint)moved));
        Assert.Equal(moved, function.BarMappedAddress(0));
        Assert.True(rig.Mmio.Read(moved, new byte[4]));
        Assert.False(rig.Mmio.Read(old, new byte[4]));

        rig.DisableMemory(slot);
        const ulong again = 0x3_0000_0000;
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0, unchecked((uint)again));
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, (uint)(again >> 32));
        Assert.Null(function.BarMappedAddress(0));
        rig.EnableMemory(slot);
        Assert.Equal(again, function.BarMappedAddress(0));
        Assert.Single(rig.Mmio.Ranges, range => range.Name.StartsWith("t BAR0", StringComparison.Ordinal));
    }

    [Fact]
    public void A_bar_placed_over_another_device_stays_unmapped_until_moved_away()
    {
        var rig = new PciRig();
        var a = new TestPciFunction("a", (2, 0x1000, false));
        var b = new TestPciFunction("b", (2, 0x1000, false));
        int slotA = rig.Root.Attach(a).Device;
        int slotB = rig.Root.Attach(b).Device;
        rig.EnableMemory(slotA);
        rig.EnableMemory(slotB);
        ulong aAddress = a.BarProgrammedAddress(2);
        ulong bAddress = b.BarProgrammedAddress(2);

        rig.EcamWrite32(slotB, PciRegs.PCI_BASE_ADDRESS_0 + 8, (uint)aAddress); // over a's BAR
        Assert.Null(b.BarMappedAddress(2));
        Assert.Equal(0x12121212u, rig.Mmio.Read32(aAddress)); // a still answers there

        rig.EcamWrite32(slotB, PciRegs.PCI_BASE_ADDRESS_0 + 8, (uint)PciRig.EcamBase); // over ECAM
        Assert.Null(b.BarMappedAddress(2));
        Assert.Equal(0x5678_1234u, rig.EcamRead32(slotB, 0));

        rig.EcamWrite32(slotB, PciRegs.PCI_BASE_ADDRESS_0 + 8, (uint)bAddress);
        Assert.Equal(bAddress, b.BarMappedAddress(2));
    }

    [Fact]
    public void Toggling_decoding_forever_does_not_grow_the_bus_tables()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x1000, true), (2, 0x1000, false));
        int slot = rig.Root.Attach(function).Device;
        rig.EnableMemory(slot);
        int ids = rig.Mmio.RangeIdCount;
        int ranges = rig.Mmio.Ranges.Count;

        for (int i = 0; i < 5000; i++)
        {
            rig.DisableMemory(slot);
            rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 8, (uint)(PciRig.Window32Base + (ulong)(i % 7) * 0x1000));
            rig.EnableMemory(slot);
        }

        Assert.Equal(ids, rig.Mmio.RangeIdCount);
        Assert.Equal(ranges, rig.Mmio.Ranges.Count);
    }

    [Theory]
    [InlineData(false)] // Linux's __pci_read_base turns decoding off around the probe
    [InlineData(true)]  // a guest that does not: the BAR follows each half-written value, then comes back
    public void Sizing_a_bar_and_restoring_it_leaves_it_mapped_where_it_was(bool decodingDuringProbe)
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x4000, true));
        int slot = rig.Root.Attach(function).Device;
        rig.EnableMemory(slot);
        ulong original = function.BarProgrammedAddress(0);
        int ranges = rig.Mmio.Ranges.Count;
        if (!decodingDuringProbe)
        {
            rig.DisableMemory(slot);
        }

        uint low = rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0);
        uint high = rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4);
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0, 0xffff_ffff);
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, 0xffff_ffff);
        Assert.Equal(decodingDuringProbe ? 0xffff_ffff_ffff_c000ul : null, function.BarMappedAddress(0));
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0, low);
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, high);
        rig.EnableMemory(slot);

        Assert.Equal(original, function.BarMappedAddress(0));
        Assert.Equal(ranges, rig.Mmio.Ranges.Count);
        Assert.Equal(0x10101010u, rig.Mmio.Read32(original));
    }

    [Fact]
    public void A_full_window_is_a_clear_error_at_attach()
    {
        var rig = new PciRig(new PciBarWindowAllocator(0xc000_0000, 0x2000, PciRig.Window64Base, 0x1000));
        var error = Assert.Throws<InvalidOperationException>(() => rig.Root.Attach(new TestPciFunction("big", (0, 0x2000, true))));
        Assert.Contains("'big'", error.Message);
        Assert.Contains("64-bit", error.Message);
    }
}
