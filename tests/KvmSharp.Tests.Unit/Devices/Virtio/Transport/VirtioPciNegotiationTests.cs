using KvmSharp.Devices.Virtio;
using KvmSharp.Tests.Unit.Devices.Pci;
using Xunit;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

public sealed class VirtioPciNegotiationTests
{
    [Fact]
    public void Version_1_is_always_offered_and_transport_features_kvmsharp_lacks_are_not()
    {
        const ulong notificationData = 1UL << 38, ringReset = 1UL << 40;
        var rig = new VirtioPciRig(new FakeVirtioDevice(features: (1UL << 3) | notificationData | ringReset));
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());

        Assert.Equal((1UL << 3) | VirtioFeatureBits.VIRTIO_F_VERSION_1, driver.ReadDeviceFeatures());
        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_DFSELECT, 2);
        Assert.Equal(0u, rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_DF));
    }

    [Fact]
    public void Features_ok_is_refused_without_version_1()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());

        Assert.False(driver.NegotiateFeatures(offered => offered & ~VirtioFeatureBits.VIRTIO_F_VERSION_1));
        driver.AddStatus(VirtioDeviceStatus.DRIVER_OK);

        Assert.Empty(rig.Device.Activations);
        Assert.Equal(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER, driver.Status);
    }

    [Theory]
    [InlineData(1UL << 0)]
    [InlineData(1UL << 34)] // RING_PACKED, not offered
    [InlineData(1UL << 63)]
    public void Features_ok_is_refused_when_the_driver_accepts_a_feature_that_was_not_offered(ulong extra)
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());

        Assert.False(driver.NegotiateFeatures(offered => offered | extra));
        Assert.True(driver.NegotiateFeatures(offered => offered)); // after a reset, an honest driver gets through
    }

    [Fact]
    public void A_subset_including_version_1_is_accepted_and_frozen_at_features_ok()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());
        ulong chosen = VirtioFeatureBits.VIRTIO_F_VERSION_1 | VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX;

        Assert.True(driver.NegotiateFeatures(_ => chosen));
        driver.WriteDriverFeatures(ulong.MaxValue); // too late: ignored

        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_GFSELECT, 0);
        ulong readBack = rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_GF);
        rig.Pci.Mmio.Write32(driver.Common + VIRTIO_PCI_COMMON_GFSELECT, 1);
        readBack |= (ulong)rig.Pci.Mmio.Read32(driver.Common + VIRTIO_PCI_COMMON_GF) << 32;
        Assert.Equal(chosen, readBack);

        driver.SetupQueue(0, 16, 0x1000, 0x2000, 0x3000, VIRTIO_MSI_NO_VECTOR);
        driver.EnableQueue(0);
        driver.AddStatus(VirtioDeviceStatus.DRIVER_OK);
        Assert.Equal(chosen, Assert.Single(rig.Device.Activations).NegotiatedFeatures);
    }

    [Fact]
    public void Driver_ok_without_features_ok_activates_nothing()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());
        driver.Reset();
        driver.AddStatus(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER | VirtioDeviceStatus.DRIVER_OK);

        Assert.Empty(rig.Device.Activations);
        Assert.False(rig.Function.IsActive);
        Assert.Equal(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER, driver.Status);
    }
}
