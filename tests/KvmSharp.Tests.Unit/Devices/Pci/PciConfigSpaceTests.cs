using KvmSharp.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

public sealed class PciConfigSpaceTests
{
    [Fact]
    public void Identity_registers_read_back_and_ignore_writes()
    {
        var rig = new PciRig();
        var function = new TestPciFunction();
        int slot = rig.Root.Attach(function).Device;

        Assert.Equal(0x5678_1234u, rig.EcamRead32(slot, PciRegs.PCI_VENDOR_ID));
        Assert.Equal(0x0b40_0003u, rig.EcamRead32(slot, PciRegs.PCI_CLASS_REVISION));
        Assert.Equal(0xef01_abcdu, rig.EcamRead32(slot, PciRegs.PCI_SUBSYSTEM_VENDOR_ID));
        Assert.Equal(0, rig.EcamRead8(slot, PciRegs.PCI_HEADER_TYPE));

        rig.EcamWrite32(slot, PciRegs.PCI_VENDOR_ID, 0xdead_beef);
        rig.EcamWrite32(slot, PciRegs.PCI_CLASS_REVISION, 0xffff_ffff);
        rig.EcamWrite32(slot, PciRegs.PCI_SUBSYSTEM_VENDOR_ID, 0);
        rig.EcamWrite8(slot, PciRegs.PCI_HEADER_TYPE, 0x80);

        Assert.Equal(0x5678_1234u, rig.EcamRead32(slot, PciRegs.PCI_VENDOR_ID));
        Assert.Equal(0x0b40_0003u, rig.EcamRead32(slot, PciRegs.PCI_CLASS_REVISION));
        Assert.Equal(0xef01_abcdu, rig.EcamRead32(slot, PciRegs.PCI_SUBSYSTEM_VENDOR_ID));
        Assert.Equal(0, rig.EcamRead8(slot, PciRegs.PCI_HEADER_TYPE));
    }

    [Fact]
    public void Command_keeps_only_implemented_bits_and_interrupt_line_is_scratch()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction()).Device;

        rig.EcamWrite16(slot, PciRegs.PCI_COMMAND, 0xffff);
        Assert.Equal(0x0547, rig.EcamRead16(slot, PciRegs.PCI_COMMAND));
        rig.EcamWrite16(slot, PciRegs.PCI_COMMAND, 0);
        Assert.Equal(0, rig.EcamRead16(slot, PciRegs.PCI_COMMAND));

        rig.EcamWrite8(slot, PciRegs.PCI_INTERRUPT_LINE, 11);
        Assert.Equal(11, rig.EcamRead8(slot, PciRegs.PCI_INTERRUPT_LINE));
        rig.EcamWrite8(slot, PciRegs.PCI_INTERRUPT_PIN, 3);
        Assert.Equal(0, rig.EcamRead8(slot, PciRegs.PCI_INTERRUPT_PIN));
    }

    [Fact]
    public void Status_error_bits_clear_only_where_one_is_written_and_cap_list_stays()
    {
        var space = new PciConfigSpace();
        space.SetWriteOneToClearMask(PciRegs.PCI_STATUS, 2, PciRegs.StatusWriteOneToClearBits);
        space.SetUInt16(PciRegs.PCI_STATUS, (ushort)(PciRegs.StatusWriteOneToClearBits | PciRegs.PCI_STATUS_CAP_LIST));

        space.Write(PciRegs.PCI_STATUS, [0x00, 0x00]); // zeros change nothing
        Assert.Equal(PciRegs.StatusWriteOneToClearBits | PciRegs.PCI_STATUS_CAP_LIST, space.ReadUInt16(PciRegs.PCI_STATUS));

        space.Write(PciRegs.PCI_STATUS, [0x10, 0x20]); // CAP_LIST (read-only) and REC_MASTER_ABORT
        Assert.Equal((PciRegs.StatusWriteOneToClearBits & ~PciRegs.PCI_STATUS_REC_MASTER_ABORT) | PciRegs.PCI_STATUS_CAP_LIST, space.ReadUInt16(PciRegs.PCI_STATUS));

        space.Write(PciRegs.PCI_STATUS, [0xff, 0xff]);
        Assert.Equal(PciRegs.PCI_STATUS_CAP_LIST, space.ReadUInt16(PciRegs.PCI_STATUS));
    }

    [Theory]
    [InlineData(0x1000ul)]
    [InlineData(0x10_0000ul)]
    [InlineData(0x8000_0000ul)]
    public void A_32_bit_bar_sizes_by_all_ones_and_restores(ulong size)
    {
        var rig = new PciRig(new PciBarWindowAllocator(0, 1UL << 32, PciRig.Window64Base, PciRig.Window64Size));
        var function = new TestPciFunction("t", (2, size, false));
        int slot = rig.Root.Attach(function).Device;
        int register = PciRegs.PCI_BASE_ADDRESS_0 + 8;
        uint original = rig.EcamRead32(slot, register);
        Assert.Equal(0u, original & 0xf); // memory, 32-bit, not prefetchable
        Assert.Equal(0ul, (original & ~0xfu) % size); // naturally aligned

        rig.EcamWrite32(slot, register, 0xffff_ffff);
        Assert.Equal((uint)~(size - 1), rig.EcamRead32(slot, register));

        rig.EcamWrite32(slot, register, original);
        Assert.Equal(original, rig.EcamRead32(slot, register));
    }

    [Fact]
    public void A_64_bit_bar_sizes_in_both_halves_and_sits_above_4g()
    {
        var rig = new PciRig();
        const ulong size = 0x4000;
        int slot = rig.Root.Attach(new TestPciFunction("t", (0, size, true))).Device;
        uint low = rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0);
        uint high = rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4);
        Assert.Equal((uint)(PciRegs.PCI_BASE_ADDRESS_MEM_TYPE_64 | PciRegs.PCI_BASE_ADDRESS_MEM_PREFETCH), low & 0xf);
        ulong address = (low & ~0xfu) | ((ulong)high << 32);
        Assert.InRange(address, PciRig.Window64Base, PciRig.Window64Base + PciRig.Window64Size - size);

        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0, 0xffff_ffff);
        rig.EcamWrite32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, 0xffff_ffff);
        ulong probed = (rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0) & ~0xfu) | ((ulong)rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0 + 4) << 32);
        Assert.Equal(size, ~probed + 1);
        Assert.Equal(0xcu, rig.EcamRead32(slot, PciRegs.PCI_BASE_ADDRESS_0) & 0xf);
    }

    [Fact]
    public void Unimplemented_bars_and_the_rom_bar_probe_as_absent()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction("t", (0, 0x1000, true))).Device;
        foreach (int register in new[] { 0x18, 0x1c, 0x20, 0x24, PciRegs.PCI_ROM_ADDRESS })
        {
            rig.EcamWrite32(slot, register, 0xffff_ffff);
            Assert.Equal(0u, rig.EcamRead32(slot, register));
        }
    }

    [Fact]
    public void Capability_list_walks_as_linux_walks_it()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x4000, true));
        int first = function.AddVendorCapability(16, 0xaa);
        int second = function.AddVendorCapability(13, 0xbb); // odd length: the next one still starts dword-aligned
        using var msix = new MsixTable(new FakeMsiController(), 4);
        int third = function.AddMsix(msix, 0, 0x2000, 0x3000);
        int slot = rig.Root.Attach(function).Device;

        var walk = rig.WalkCapabilities(slot);

        Assert.Equal([(first, (byte)PciRegs.PCI_CAP_ID_VNDR), (second, (byte)PciRegs.PCI_CAP_ID_VNDR), (third, (byte)PciRegs.PCI_CAP_ID_MSIX)], walk);
        Assert.Equal(0x40, first);
        Assert.All(walk, capability => Assert.Equal(0, capability.Offset & 3));
        Assert.Equal(0xbb, rig.EcamRead8(slot, second + 3));
        Assert.Equal(0x2000u, rig.EcamRead32(slot, third + PciRegs.PCI_MSIX_TABLE)); // BIR 0
        Assert.Equal(3, rig.EcamRead16(slot, third + PciRegs.PCI_MSIX_FLAGS) & PciRegs.PCI_MSIX_FLAGS_QSIZE);
    }

    [Fact]
    public void A_function_without_capabilities_has_no_cap_list_bit()
    {
        var rig = new PciRig();
        Assert.Empty(rig.WalkCapabilities(0)); // the host bridge
        Assert.Equal(0, rig.EcamRead16(0, PciRegs.PCI_STATUS) & PciRegs.PCI_STATUS_CAP_LIST);
        Assert.Equal(0x0600_0000u, rig.EcamRead32(0, PciRegs.PCI_CLASS_REVISION) & 0xffff_ff00);
    }
}
