using KvmSharp.Tests.Unit.Devices.Pci;
using Xunit;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

public sealed class VirtioPciQueueRulesTests
{
    [Theory]
    [InlineData(0, 256)]    // zero: ignored
    [InlineData(100, 256)]  // not a power of two: ignored
    [InlineData(512, 256)]  // above the maximum: ignored
    [InlineData(128, 128)]
    [InlineData(1, 1)]
    public void Queue_size_takes_only_powers_of_two_up_to_the_maximum(ushort written, ushort expected)
    {
        var (rig, driver) = Probed();
        Select(rig, driver, 0);
        Assert.Equal(256, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE));

        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE, written);

        Assert.Equal(expected, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE));
    }

    [Fact]
    public void A_queue_beyond_num_queues_reads_size_zero_and_ignores_writes()
    {
        var (rig, driver) = Probed();
        Select(rig, driver, 2);

        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE, 16);
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_Q_DESCLO, 0x1000);

        Assert.Equal(0, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE));
        Assert.Equal(0, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_ENABLE));
        Assert.Equal(0u, rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_Q_DESCLO));
        Assert.Equal(2, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_SELECT));
    }

    [Fact]
    public void An_enabled_queue_freezes_and_cannot_be_disabled_by_writing_zero()
    {
        var (rig, driver) = Probed();
        Assert.NotNull(driver.SetupQueue(1, 32, 0x1_2345_6000, 0x7000, 0x8000, VIRTIO_MSI_NO_VECTOR));
        driver.EnableQueue(1);

        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE, 16);
        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_Q_DESCLO, 0x9000);
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_ENABLE, 0);

        Assert.Equal(32, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_SIZE));
        Assert.Equal(0x2345_6000u, rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_Q_DESCLO));
        Assert.Equal(1u, rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_Q_DESCHI));
        Assert.Equal(1, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_ENABLE));
        Assert.Equal(1, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_NOFF));
    }

    [Fact]
    public void A_vector_beyond_the_msix_table_reads_back_as_no_vector()
    {
        var (rig, driver) = Probed();
        Select(rig, driver, 0);
        Assert.Equal(VIRTIO_MSI_NO_VECTOR, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX)); // reset value

        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX, 2);
        Assert.Equal(2, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX));
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX, 3); // three vectors: 0..2
        Assert.Equal(VIRTIO_MSI_NO_VECTOR, rig.Pci.Mmio.Read16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX));
        Assert.Equal(VIRTIO_MSI_NO_VECTOR, driver.SetConfigVector(40));
        Assert.Equal(1, driver.SetConfigVector(1));
    }

    [Fact]
    public void Reset_returns_every_register_to_its_reset_value_and_revokes_the_activation()
    {
        var (rig, driver) = Probed();
        driver.InitializeToDriverOk(offered => offered);
        var activation = rig.Device.Activations[^1];
        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_DFSELECT, 1);
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SELECT, 1);
        int resetsBefore = rig.Device.Resets;

        driver.Reset();

        Assert.Equal(resetsBefore + 1, rig.Device.Resets);
        Assert.False(rig.Function.IsActive);
        var c = driver.Common;
        Assert.Equal(0u, rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_DFSELECT));
        Assert.Equal(0u, rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_GFSELECT));
        Assert.Equal(0u, rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_GF));
        Assert.Equal(VIRTIO_MSI_NO_VECTOR, rig.Pci.Mmio.Read16(c + VIRTIO_PCI_COMMON_MSIX));
        Assert.Equal(0, rig.Pci.Mmio.Read16(c + VIRTIO_PCI_COMMON_Q_SELECT));
        for (int queue = 0; queue < 2; queue++)
        {
            Select(rig, driver, queue);
            Assert.Equal(rig.Device.QueueMaxSizes[queue], rig.Pci.Mmio.Read16(c + VIRTIO_PCI_COMMON_Q_SIZE));
            Assert.Equal(VIRTIO_MSI_NO_VECTOR, rig.Pci.Mmio.Read16(c + VIRTIO_PCI_COMMON_Q_MSIX));
            Assert.Equal(0, rig.Pci.Mmio.Read16(c + VIRTIO_PCI_COMMON_Q_ENABLE));
            Assert.Equal(0u, rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_Q_DESCLO) | rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_Q_AVAILLO) | rig.Pci.Mmio.Read32(c + VIRTIO_PCI_COMMON_Q_USEDHI));
        }

        // The old activation's handles are dead: a late completion neither interrupts nor breaks the new device.
        int delivered = rig.Msi.Vectors.Sum(vector => vector.Delivered);
        activation.Interrupt.NotifyQueue(0);
        activation.Transport.MarkNeedsReset("late");
        Assert.Equal(delivered, rig.Msi.Vectors.Sum(vector => vector.Delivered));
        Assert.Equal(0, (int)driver.Status);

        // A doorbell rung after the reset does not reach the device.
        rig.Registrar.Active.First().Ring();
        Assert.Empty(rig.Device.Notifies);
    }

    private static (VirtioPciRig, LinuxVirtioPciDriver) Probed()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());
        return (rig, driver);
    }

    private static void Select(VirtioPciRig rig, LinuxVirtioPciDriver driver, int queue) =>
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SELECT, (ushort)queue);
}
