using KvmSharp.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

public sealed class MsixTableTests
{
    private const ulong Lapic = 0xfee0_0000;

    [Fact]
    public void Vectors_come_out_of_reset_masked_and_a_trigger_is_held_pending_until_unmasked()
    {
        var controller = new FakeMsiController();
        using var table = new MsixTable(controller, 3);
        table.SetControl(enabled: true, functionMasked: false);
        Program(table, 1, Lapic | 0x1000, 0x41);

        Assert.True(table.IsMasked(1));
        Assert.True(table.Trigger(1));
        Assert.True(table.Trigger(1)); // a second one merges into the same pending bit
        Assert.True(table.IsPending(1));
        Assert.Equal(0b010ul, ReadPba(table));
        Assert.Equal(0, controller.Vectors[1].Delivered + controller.Vectors[1].DroppedBeforeUpdate);

        Unmask(table, 1);

        Assert.Equal(1, controller.Vectors[1].Delivered);
        Assert.Equal(0, controller.Vectors[1].DroppedBeforeUpdate); // the route was updated before the delivery
        Assert.Equal((Lapic | 0x1000, 0x41u), (controller.Vectors[1].Address, controller.Vectors[1].Data));
        Assert.False(table.IsPending(1));
        Assert.Equal(0ul, ReadPba(table));

        Assert.True(table.Trigger(1));
        Assert.Equal(2, controller.Vectors[1].Delivered);
        Assert.Equal(1, controller.Vectors[1].Updates); // unchanged message: no new route
    }

    [Fact]
    public void The_function_mask_holds_every_vector_and_releasing_it_delivers_the_pending_ones()
    {
        var controller = new FakeMsiController();
        using var table = new MsixTable(controller, 70); // two PBA qwords
        table.SetControl(enabled: true, functionMasked: true);
        foreach (int vector in new[] { 0, 65, 69 })
        {
            Program(table, vector, Lapic, (uint)(0x30 + vector));
            Unmask(table, vector);
            table.Trigger(vector);
        }

        Assert.All(controller.Vectors, vector => Assert.Equal(0, vector.Delivered));
        Assert.True(table.IsPending(65));
        Assert.Equal(16, table.PbaSize);

        table.SetControl(enabled: true, functionMasked: false);

        Assert.Equal(1, controller.Vectors[0].Delivered);
        Assert.Equal(1, controller.Vectors[65].Delivered);
        Assert.Equal(1, controller.Vectors[69].Delivered);
        Assert.Equal(0, controller.Vectors.Sum(vector => vector.Delivered) - 3);
        Assert.False(table.IsPending(69));
    }

    [Fact]
    public void While_msix_is_disabled_a_trigger_is_refused_and_not_held()
    {
        var controller = new FakeMsiController();
        using var table = new MsixTable(controller, 2);
        Program(table, 0, Lapic, 0x50);
        Unmask(table, 0);

        Assert.False(table.Trigger(0));
        Assert.False(table.IsPending(0));
        table.SetControl(enabled: true, functionMasked: false);
        Assert.Equal(0, controller.Vectors[0].Delivered);
        Assert.True(table.Trigger(0));
        Assert.Equal(1, controller.Vectors[0].Delivered);
        Assert.True(table.Trigger(5)); // beyond the table: dropped, not thrown
    }

    [Fact]
    public void Reserved_bits_read_as_zero()
    {
        using var table = new MsixTable(new FakeMsiController(), 1);
        var region = new MsixRegion(table);
        region.Write32(0, 0xffff_ffff);
        region.Write32(12, 0xffff_fffe);
        Assert.Equal(0xffff_fffcu, region.Read32(0));
        Assert.Equal(0u, region.Read32(12)); // unmasked, reserved bits zero
        region.Write32(12, 0xffff_ffff);
        Assert.Equal(1u, region.Read32(12));
        Assert.Equal(0u, region.Read32(16)); // past the table
    }

    [Fact]
    public void A_message_changed_while_unmasked_reaches_the_route_before_the_next_delivery()
    {
        var controller = new FakeMsiController();
        using var table = new MsixTable(controller, 1);
        table.SetControl(enabled: true, functionMasked: false);
        Program(table, 0, Lapic, 0x60);
        Unmask(table, 0);
        Assert.Equal(1, controller.Vectors[0].Updates);

        new MsixRegion(table).Write32(8, 0x61); // data rewritten without masking first
        Assert.Equal(0x61u, controller.Vectors[0].Data);
        table.Trigger(0);
        Assert.Equal(1, controller.Vectors[0].Delivered);
    }

    [Fact]
    public void The_capability_control_bits_in_configuration_space_drive_the_table()
    {
        var rig = new PciRig();
        var function = new TestPciFunction("t", (0, 0x4000, true));
        var controller = new FakeMsiController();
        var table = new MsixTable(controller, 2);
        int capability = function.AddMsix(table, 0, 0x2000, 0x3000);
        int slot = rig.Root.Attach(function).Device;
        int control = capability + PciRegs.PCI_MSIX_FLAGS;

        // Linux's msix_capability_init: enable with everything masked, program, then lift the function mask.
        rig.EcamWrite16(slot, control, PciRegs.PCI_MSIX_FLAGS_ENABLE | PciRegs.PCI_MSIX_FLAGS_MASKALL);
        Assert.True(table.Enabled);
        Assert.True(table.FunctionMasked);
        Program(table, 0, Lapic, 0x70);
        Unmask(table, 0);
        table.Trigger(0);
        Assert.Equal(0, controller.Vectors[0].Delivered);

        rig.EcamWrite16(slot, control, PciRegs.PCI_MSIX_FLAGS_ENABLE);
        Assert.Equal(1, controller.Vectors[0].Delivered);
        Assert.Equal(PciRegs.PCI_MSIX_FLAGS_ENABLE | 1, rig.EcamRead16(slot, control)); // table size N-1 stays read-only

        rig.EcamWrite16(slot, control, 0x07ff);
        Assert.False(table.Enabled);
        Assert.Equal(1, rig.EcamRead16(slot, control));
        function.Dispose();
        Assert.All(controller.Vectors, vector => Assert.True(vector.Disposed));
    }

    internal static void Program(MsixTable table, int vector, ulong address, uint data)
    {
        var region = new MsixRegion(table);
        ulong entry = (ulong)vector * 16;
        region.Write32(entry, (uint)address);
        region.Write32(entry + 4, (uint)(address >> 32));
        region.Write32(entry + 8, data);
    }

    internal static void Unmask(MsixTable table, int vector) => new MsixRegion(table).Write32((ulong)vector * 16 + 12, 0);

    private static ulong ReadPba(MsixTable table)
    {
        var data = new byte[8];
        table.ReadPba(0, data);
        return BitConverter.ToUInt64(data);
    }

    private sealed class MsixRegion(MsixTable table) : KvmSharp.Devices.Bus.IBusDevice
    {
        public void Read(ulong offset, Span<byte> data) => table.ReadTable(offset, data);

        public void Write(ulong offset, ReadOnlySpan<byte> data) => table.WriteTable(offset, data);
    }
}
