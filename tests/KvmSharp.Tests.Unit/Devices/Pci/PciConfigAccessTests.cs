using KvmSharp.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

public sealed class PciConfigAccessTests
{
    [Fact]
    public void Mechanism_1_and_ecam_read_the_same_bytes_at_every_width()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x4000, true), (2, 0x1000, false));
        function.AddVendorCapability(20, 0x5a);
        int slot = rig.Root.Attach(function).Device;
        rig.EnableMemory(slot);

        foreach (int device in new[] { 0, slot })
        {
            for (int register = 0; register < 256; register++)
            {
                Assert.Equal(rig.EcamRead8(device, register), rig.Conf1Read(0, device, 0, register, 1));
                if ((register & 1) == 0)
                {
                    Assert.Equal(rig.EcamRead16(device, register), rig.Conf1Read(0, device, 0, register, 2));
                }

                if ((register & 3) == 0)
                {
                    Assert.Equal(rig.EcamRead32(device, register), rig.Conf1Read(0, device, 0, register, 4));
                }
            }
        }
    }

    [Fact]
    public void A_write_through_one_mechanism_is_seen_through_the_other()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction()).Device;

        rig.Conf1Write(slot, PciRegs.PCI_INTERRUPT_LINE, 1, 0x0a);
        Assert.Equal(0x0a, rig.EcamRead8(slot, PciRegs.PCI_INTERRUPT_LINE));
        rig.EcamWrite8(slot, PciRegs.PCI_LATENCY_TIMER, 0x40);
        Assert.Equal(0x40u, rig.Conf1Read(0, slot, 0, PciRegs.PCI_LATENCY_TIMER, 1));
        rig.Conf1Write(slot, PciRegs.PCI_COMMAND, 2, PciRegs.PCI_COMMAND_MASTER);
        Assert.Equal(PciRegs.PCI_COMMAND_MASTER, rig.EcamRead16(slot, PciRegs.PCI_COMMAND));
    }

    [Theory]
    [InlineData(0, 5, 0)] // empty slot
    [InlineData(0, 0, 3)] // missing function of a present device
    [InlineData(1, 0, 0)] // a bus that does not exist
    [InlineData(0, 31, 7)]
    public void Missing_functions_read_all_ones_through_both_mechanisms(int bus, int device, int function)
    {
        var rig = new PciRig();
        Assert.Equal(0xffff_ffffu, rig.Conf1Read(bus, device, function, 0, 4));
        Assert.Equal(0xffffu, rig.Conf1Read(bus, device, function, 2, 2));
        if (bus == 0)
        {
            Assert.Equal(0xffff_ffffu, rig.EcamRead32(device, 0, function));
        }
    }

    [Fact]
    public void Without_the_enable_bit_the_data_port_is_not_a_configuration_cycle()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction()).Device;

        rig.Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress(0, (byte)slot, 0), PciRegs.PCI_INTERRUPT_LINE) & ~PciConfigAddress.ConfigMechanism1Enable);
        Assert.Equal(0xffff_ffffu, rig.Pio.Read32(0xcfc));
        rig.Pio.Write8(0xcfc, 0x33);

        Assert.Equal(0, rig.EcamRead8(slot, PciRegs.PCI_INTERRUPT_LINE));
    }

    [Fact]
    public void Config_address_reads_back_and_only_dword_writes_latch_it()
    {
        var rig = new PciRig();
        rig.Pio.Write32(0xcf8, 0x8000_0810);
        Assert.Equal(0x8000_0810u, rig.Pio.Read32(0xcf8));

        rig.Pio.Write32(0xcf8, 0xffff_ffff); // reserved bits 30:24 and 1:0 read as zero
        Assert.Equal(0x80ff_fffcu, rig.Pio.Read32(0xcf8));

        rig.Pio.Write32(0xcf8, 0x8000_0000);
        rig.Pio.Write8(0xcf9, 0x06); // a chipset's reset control register, not CONFIG_ADDRESS
        rig.Pio.Write16(0xcf8, 0x1234);
        Assert.Equal(0x8000_0000u, rig.Pio.Read32(0xcf8));
        Assert.Equal(0xff, rig.Pio.Read8(0xcf9));
    }

    [Fact]
    public void Misaligned_and_overlong_accesses_read_all_ones_and_write_nothing()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction()).Device;
        rig.EcamWrite8(slot, PciRegs.PCI_INTERRUPT_LINE, 0x05);

        Assert.Equal(0xffff_ffffu, rig.Mmio.Read32(PciRig.Ecam(slot, 0, PciRegs.PCI_INTERRUPT_LINE - 1)));
        Assert.Equal(0xffffu, rig.Mmio.Read16(PciRig.Ecam(slot, 0, PciRegs.PCI_INTERRUPT_LINE + 1)));
        rig.Mmio.Write16(PciRig.Ecam(slot, 0, PciRegs.PCI_INTERRUPT_LINE - 1), 0xffff);
        rig.Mmio.Write32(PciRig.Ecam(slot, 0, PciRegs.PCI_INTERRUPT_LINE - 2), 0xffff_ffff);

        // Through 0xCFE a dword would cross into the next register: not a configuration cycle.
        rig.Pio.Write32(0xcf8, PciConfigAddress.ToConfigMechanism1(new PciAddress(0, (byte)slot, 0), PciRegs.PCI_INTERRUPT_LINE));
        Assert.Equal(0xffff_ffffu, rig.Pio.Read32(0xcfe));

        Assert.Equal(0x05, rig.EcamRead8(slot, PciRegs.PCI_INTERRUPT_LINE));
    }

    [Fact]
    public void Extended_configuration_space_of_a_conventional_function_reads_zero()
    {
        var rig = new PciRig();
        int slot = rig.Root.Attach(new TestPciFunction()).Device;
        Assert.Equal(0u, rig.EcamRead32(slot, 0x100));
        Assert.Equal(0u, rig.EcamRead32(slot, 0xffc));
    }

    [Fact]
    public void Functions_go_to_free_slots_and_a_taken_slot_is_refused()
    {
        var rig = new PciRig();
        Assert.Equal(new PciAddress(0, 1, 0), rig.Root.Attach(new TestPciFunction("a")));
        Assert.Equal(new PciAddress(0, 7, 0), rig.Root.Attach(new TestPciFunction("b"), device: 7));
        Assert.Equal(new PciAddress(0, 2, 0), rig.Root.Attach(new TestPciFunction("c")));

        var error = Assert.Throws<InvalidOperationException>(() => rig.Root.Attach(new TestPciFunction("d"), device: 7));
        Assert.Contains("'b'", error.Message);
        Assert.Contains("'d'", error.Message);
    }
}
