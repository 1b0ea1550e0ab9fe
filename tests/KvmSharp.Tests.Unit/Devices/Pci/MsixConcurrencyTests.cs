using KvmSharp.Devices.Pci;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Pci;

public sealed class MsixConcurrencyTests
{
    [Fact]
    public void A_trigger_racing_the_guest_masking_is_either_delivered_or_left_pending_never_lost()
    {
        var controller = new FakeMsiController();
        using var table = new MsixTable(controller, 1);
        table.SetControl(enabled: true, functionMasked: false);
        MsixTableTests.Program(table, 0, 0xfee0_0000, 0x41);
        MsixTableTests.Unmask(table, 0);
        Span<byte> mask = [1, 0, 0, 0];

        for (int round = 0; round < 500; round++)
        {
            // The guest masks while a device thread fires; after the mask, any trigger that was not
            // delivered must sit in the PBA, so unmasking delivers it.
            int deliveredBefore = controller.Vectors[0].Delivered;
            var trigger = new Thread(() => table.Trigger(0));
            trigger.Start();
            table.WriteTable(12, mask);
            trigger.Join();
            bool pending = table.IsPending(0);
            int deliveredWhileRacing = controller.Vectors[0].Delivered - deliveredBefore;
            Assert.True(pending || deliveredWhileRacing == 1, $"round {round}: the trigger was neither delivered nor held pending");

            MsixTableTests.Unmask(table, 0);
            Assert.False(table.IsPending(0));
            Assert.Equal(1, controller.Vectors[0].Delivered - deliveredBefore);
        }
    }
}
