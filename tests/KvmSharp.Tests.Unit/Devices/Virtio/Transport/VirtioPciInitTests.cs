using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Virtio;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Tests.Unit.Devices.Pci;
using Xunit;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

public sealed class VirtioPciInitTests
{
    [Fact]
    public void The_function_identifies_as_a_modern_virtio_device_with_every_structure_in_one_64_bit_bar()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);

        Assert.Equal(0x1af4, rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_VENDOR_ID));
        Assert.Equal(0x1042, rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_DEVICE_ID));
        Assert.Equal(1, rig.Pci.EcamRead8(rig.Slot, PciRegs.PCI_REVISION_ID));
        Assert.Equal(0xcu, rig.Pci.EcamRead32(rig.Slot, PciRegs.PCI_BASE_ADDRESS_0) & 0xf); // memory, 64-bit, prefetchable
        Assert.True(driver.Probe());

        ulong bar = rig.Function.BarProgrammedAddress(VirtioPciFunction.BarIndex);
        Assert.Equal(bar, driver.BarBase);
        Assert.True(bar >= PciRig.Window64Base);
        Assert.Equal(bar + rig.Function.Layout.CommonOffset, driver.Common);
        Assert.Equal(bar + rig.Function.Layout.MsixTableOffset, driver.MsixTable);
        Assert.Equal(VirtioPciBarLayout.NotifyOffMultiplier, driver.NotifyOffMultiplier);
        Assert.NotEqual(0ul, driver.DeviceConfig);
        Assert.Equal(2, driver.NumQueues);
        Assert.Equal(3, (rig.Pci.EcamRead16(rig.Slot, driver.MsixCapability + PciRegs.PCI_MSIX_FLAGS) & PciRegs.PCI_MSIX_FLAGS_QSIZE) + 1); // a vector per queue + config
    }

    [Fact]
    public void Linux_init_sequence_reaches_driver_ok_and_activates_the_device_with_what_the_driver_set_up()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);

        ulong[] doorbells = driver.InitializeToDriverOk();

        VirtioActivation activation = Assert.Single(rig.Device.Activations);
        Assert.Equal(FakeVirtioDevice.DefaultFeatures | VirtioFeatureBits.VIRTIO_F_VERSION_1, activation.NegotiatedFeatures);
        Assert.Equal(
            [
                new VirtqueueConfig(0, 64, true, new(0x10_0000), new(0x10_4000), new(0x10_8000)),
                new VirtqueueConfig(1, 64, true, new(0x11_0000), new(0x11_4000), new(0x11_8000)),
            ],
            activation.Queues);
        Assert.Equal(
            VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER | VirtioDeviceStatus.FEATURES_OK | VirtioDeviceStatus.DRIVER_OK,
            driver.Status);
        Assert.True(rig.Function.IsActive);
        Assert.Equal(driver.Notify + VirtioPciBarLayout.NotifyOffMultiplier, doorbells[1]);
        Assert.Equal(1, rig.Device.Resets); // the probe's reset
    }

    [Fact]
    public void Doorbells_are_registered_per_queue_and_ringing_one_notifies_the_device_on_the_loop()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        ulong[] doorbells = driver.InitializeToDriverOk();

        var active = rig.Registrar.Active.ToList();
        Assert.Equal(doorbells, active.Select(doorbell => doorbell.Address));
        Assert.All(active, doorbell => Assert.Equal(VirtioPciFunction.DoorbellWriteLength, doorbell.Length));

        active[1].Ring();
        Assert.Equal([1], rig.Device.Notifies.Select(notify => notify.Queue));
    }

    [Fact]
    public void Without_an_ioeventfd_a_kick_is_posted_to_the_loop_and_never_runs_on_the_vcpu_thread()
    {
        var rig = new VirtioPciRig(acceptDoorbells: false);
        var driver = new LinuxVirtioPciDriver(rig);
        ulong[] doorbells = driver.InitializeToDriverOk();
        Assert.Equal(0, rig.Function.RegisteredDoorbells);
        Assert.Equal(2, rig.Loop.RunPending()); // the activation's catch-up notifications
        rig.Device.Notifies.Clear();

        driver.Kick(doorbells[0], 0);
        driver.Kick(doorbells[1], 1);
        rig.Pci.Mmio.Write16(driver.Notify + 2 * VirtioPciBarLayout.NotifyOffMultiplier, 2); // no queue 2: nothing posted

        Assert.Empty(rig.Device.Notifies);
        Assert.Equal(2, rig.Loop.Pending);
        rig.Loop.RunPendingOnAnotherThread();
        Assert.Equal([0, 1], rig.Device.Notifies.Select(notify => notify.Queue));
        Assert.All(rig.Device.Notifies, notify => Assert.NotEqual(Environment.CurrentManagedThreadId, notify.ThreadId));
    }

    [Fact]
    public void Each_enabled_queue_gets_one_catch_up_notification_after_activation_never_before()
    {
        var rig = new VirtioPciRig(new FakeVirtioDevice(queueMaxSizes: [64, 64, 64]));
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());
        Assert.True(driver.NegotiateFeatures(offered => offered));
        driver.SetupQueue(0, 64, 0x1000, 0x2000, 0x3000, VIRTIO_MSI_NO_VECTOR);
        driver.SetupQueue(2, 64, 0x4000, 0x5000, 0x6000, VIRTIO_MSI_NO_VECTOR);
        driver.EnableQueue(0);
        driver.EnableQueue(2);

        rig.Registrar.Active.First().Ring(); // a kick before DRIVER_OK reaches nobody
        Assert.Empty(rig.Device.Notifies);
        driver.AddStatus(VirtioDeviceStatus.DRIVER_OK);
        Assert.Empty(rig.Device.Notifies); // posted, not run on the vCPU thread
        rig.Loop.RunPending();

        Assert.Equal([0, 2], rig.Device.Notifies.Select(notify => notify.Queue));
        Assert.Equal(0, rig.Device.NotifiesWhileInactive);
    }

    [Fact]
    public void Moving_the_bar_or_toggling_decoding_moves_the_doorbells()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        driver.InitializeToDriverOk();
        Assert.Equal(2, rig.Function.RegisteredDoorbells);

        rig.Pci.DisableMemory(rig.Slot);
        Assert.Empty(rig.Registrar.Active);

        const ulong moved = 0x7_0000_0000;
        rig.Pci.EcamWrite32(rig.Slot, PciRegs.PCI_BASE_ADDRESS_0, unchecked((uint)moved) | 0xc);
        rig.Pci.EcamWrite32(rig.Slot, PciRegs.PCI_BASE_ADDRESS_0 + 4, (uint)(moved >> 32));
        rig.Pci.EnableMemory(rig.Slot);

        Assert.Equal(
            [moved + rig.Function.Layout.NotifyOffset, moved + rig.Function.Layout.NotifyOffset + VirtioPciBarLayout.NotifyOffMultiplier],
            rig.Registrar.Active.Select(doorbell => doorbell.Address));
        Assert.Equal(VirtioDeviceStatus.DRIVER_OK, (VirtioDeviceStatus)rig.Pci.Mmio.Read8(moved + VIRTIO_PCI_COMMON_STATUS) & VirtioDeviceStatus.DRIVER_OK);
    }

    [Fact]
    public void A_host_refusing_doorbells_with_an_error_leaves_kicks_on_the_mmio_path()
    {
        var pci = new PciRig();
        var device = new FakeVirtioDevice();
        var loop = new FakeEventLoop();
        var registrar = new ThrowingNotifyRegistrar();
        var function = new VirtioPciFunction(device, new FakeMsiController(), new NoGuestMemory(), loop, registrar);
        int slot = pci.Root.Attach(function).Device;

        pci.EnableMemory(slot); // maps the BAR: every registration throws, none escapes

        Assert.Equal(2, registrar.Attempts);
        Assert.Equal(0, function.RegisteredDoorbells);
        Assert.NotNull(function.BarMappedAddress(0));
        pci.Mmio.Write16(function.BarMappedAddress(0)!.Value + function.Layout.NotifyOffset, 0);
        Assert.Equal(1, loop.Pending);
    }

    [Fact]
    public void Queue_and_config_interrupts_go_to_the_vectors_the_driver_chose()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        driver.InitializeToDriverOk();
        VirtioActivation activation = rig.Device.Activations[^1];
        byte generation = rig.Pci.Mmio.Read8(driver.Common + VIRTIO_PCI_COMMON_CFGGENERATION);

        activation.Interrupt.NotifyQueue(1);
        activation.Interrupt.NotifyQueue(1);
        activation.Interrupt.NotifyConfigChange();
        activation.Interrupt.NotifyQueue(7); // no such queue: dropped

        Assert.Equal([1, 0, 2], rig.Msi.Vectors.Select(vector => vector.Delivered));
        Assert.Equal((LinuxVirtioPciDriver.LapicBase, 0x42u), (rig.Msi.Vectors[2].Address, rig.Msi.Vectors[2].Data));
        Assert.Equal((byte)(generation + 1), rig.Pci.Mmio.Read8(driver.Common + VIRTIO_PCI_COMMON_CFGGENERATION));
    }

    [Fact]
    public void No_vector_means_no_interrupt_with_msix_enabled()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        driver.InitializeToDriverOk();
        driver.SetConfigVector(VIRTIO_MSI_NO_VECTOR);
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_SELECT, 0);
        rig.Pci.Mmio.Write16(driver.Common + VIRTIO_PCI_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);

        rig.Device.Activations[^1].Interrupt.NotifyQueue(0);
        rig.Device.Activations[^1].Interrupt.NotifyConfigChange();

        Assert.All(rig.Msi.Vectors, vector => Assert.Equal(0, vector.Delivered + vector.DroppedBeforeUpdate));
        Assert.Equal(0, rig.Pci.Mmio.Read8(driver.Isr));
    }

    [Fact]
    public void Without_msix_interrupts_set_isr_bits_and_intx_until_the_isr_is_read()
    {
        var rig = new VirtioPciRig(withIntx: true);
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());
        Assert.Equal(1, rig.Pci.EcamRead8(rig.Slot, PciRegs.PCI_INTERRUPT_PIN));
        Assert.True(driver.NegotiateFeatures(offered => offered));
        driver.SetupQueue(0, 64, 0x1000, 0x2000, 0x3000, VIRTIO_MSI_NO_VECTOR);
        driver.EnableQueue(0);
        driver.AddStatus(VirtioDeviceStatus.DRIVER_OK);
        var interrupt = rig.Device.Activations[^1].Interrupt;

        interrupt.NotifyQueue(0);
        Assert.True(rig.Intx!.Level);
        Assert.NotEqual(0, rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_STATUS) & PciRegs.PCI_STATUS_INTERRUPT);
        interrupt.NotifyConfigChange();

        Assert.Equal(IsrQueue | VIRTIO_PCI_ISR_CONFIG, rig.Pci.Mmio.Read8(driver.Isr));
        Assert.False(rig.Intx.Level);
        Assert.Equal(0, rig.Pci.Mmio.Read8(driver.Isr)); // read-to-clear
        Assert.Equal(0, rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_STATUS) & PciRegs.PCI_STATUS_INTERRUPT);

        // Interrupt Disable keeps the line low while the ISR still latches.
        rig.Pci.EcamWrite16(rig.Slot, PciRegs.PCI_COMMAND, (ushort)(rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_COMMAND) | PciRegs.PCI_COMMAND_INTX_DISABLE));
        interrupt.NotifyQueue(0);
        Assert.False(rig.Intx.Level);
        Assert.Equal(IsrQueue, rig.Pci.Mmio.Read8(driver.Isr));

        // With INTx allowed again, a pending ISR raises the line, and enabling MSI-X drops it.
        rig.Pci.EcamWrite16(rig.Slot, PciRegs.PCI_COMMAND, (ushort)(rig.Pci.EcamRead16(rig.Slot, PciRegs.PCI_COMMAND) & ~PciRegs.PCI_COMMAND_INTX_DISABLE));
        interrupt.NotifyQueue(0);
        Assert.True(rig.Intx.Level);
        rig.Pci.EcamWrite16(rig.Slot, driver.MsixCapability + PciRegs.PCI_MSIX_FLAGS, PciRegs.PCI_MSIX_FLAGS_ENABLE);
        Assert.False(rig.Intx.Level);
    }

    [Fact]
    public void Device_configuration_is_forwarded_with_offsets_from_its_structure()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        Assert.True(driver.Probe());

        Assert.Equal(0x8070_6050u, rig.Pci.Mmio.Read32(driver.DeviceConfig + 4));
        Assert.Equal(0u, rig.Pci.Mmio.Read32(driver.DeviceConfig + 0x100));
        rig.Pci.Mmio.Write16(driver.DeviceConfig + 6, 0xbeef);
        Assert.Equal(6u, rig.Device.ConfigWrites[0].Offset);
        Assert.Equal([0xef, 0xbe], rig.Device.ConfigWrites[0].Data);
    }

    [Fact]
    public void The_pci_cfg_capability_is_a_window_onto_the_bar_even_with_decoding_off()
    {
        var rig = new VirtioPciRig();
        var pci = rig.Pci;
        int capability = rig.Pci.WalkCapabilities(rig.Slot)
            .Select(found => found.Offset)
            .Single(offset => pci.EcamRead8(rig.Slot, offset) == PciRegs.PCI_CAP_ID_VNDR && pci.EcamRead8(rig.Slot, offset + VIRTIO_PCI_CAP_CFG_TYPE) == VIRTIO_PCI_CAP_PCI_CFG);
        int data = capability + StructVirtioPciCapSize;
        Assert.Null(rig.Function.BarMappedAddress(0));

        void Target(int bar, ulong offset, uint length)
        {
            pci.EcamWrite8(rig.Slot, capability + VIRTIO_PCI_CAP_BAR, (byte)bar);
            pci.EcamWrite32(rig.Slot, capability + VIRTIO_PCI_CAP_OFFSET, (uint)offset);
            pci.EcamWrite32(rig.Slot, capability + VIRTIO_PCI_CAP_LENGTH, length);
        }

        Target(0, rig.Function.Layout.CommonOffset + VIRTIO_PCI_COMMON_NUMQ, 2);
        Assert.Equal(2u, pci.EcamRead32(rig.Slot, data));

        Target(0, rig.Function.Layout.CommonOffset + VIRTIO_PCI_COMMON_STATUS, 1);
        pci.EcamWrite32(rig.Slot, data, (uint)VirtioDeviceStatus.ACKNOWLEDGE);
        Assert.Equal(VirtioDeviceStatus.ACKNOWLEDGE, rig.Function.DeviceStatus);
        Assert.Equal((uint)VirtioDeviceStatus.ACKNOWLEDGE, pci.EcamRead32(rig.Slot, data));

        Target(0, rig.Function.Layout.DeviceConfigOffset + 4, 4);
        Assert.Equal(0x8070_6050u, pci.EcamRead32(rig.Slot, data));

        // Misdirected windows: another BAR, a bad length, an unaligned or out-of-range offset.
        foreach (var (bar, offset, length) in new[] { (2, 0ul, 4u), (0, 0ul, 3u), (0, 0ul, 8u), (0, 2ul, 4u), (0, rig.Function.Layout.Size, 1u) })
        {
            Target(bar, offset, length);
            Assert.Equal(0u, pci.EcamRead32(rig.Slot, data));
            pci.EcamWrite32(rig.Slot, data, 0);
        }

        Assert.Equal(VirtioDeviceStatus.ACKNOWLEDGE, rig.Function.DeviceStatus);
    }

    [Fact]
    public void Mark_needs_reset_sets_the_status_bit_and_raises_one_config_interrupt()
    {
        var rig = new VirtioPciRig();
        var driver = new LinuxVirtioPciDriver(rig);
        driver.InitializeToDriverOk();
        var transport = rig.Device.Activations[^1].Transport;

        transport.MarkNeedsReset("descriptor 3 points outside guest RAM");
        transport.MarkNeedsReset("again");

        Assert.True((driver.Status & VirtioDeviceStatus.DEVICE_NEEDS_RESET) != 0);
        Assert.True((driver.Status & VirtioDeviceStatus.DRIVER_OK) != 0);
        Assert.Equal(1, rig.Msi.Vectors[0].Delivered);

        driver.AddStatus(VirtioDeviceStatus.ACKNOWLEDGE); // a status write cannot clear it
        Assert.True((driver.Status & VirtioDeviceStatus.DEVICE_NEEDS_RESET) != 0);
        driver.Reset();
        Assert.Equal((VirtioDeviceStatus)0, driver.Status);
    }

    [Fact]
    public void The_needs_reset_reason_is_logged_as_a_warning_naming_the_function()
    {
        var logger = new CapturingLogger<VirtioPciFunction>();
        var rig = new VirtioPciRig(logger: logger, name: "vda");
        new LinuxVirtioPciDriver(rig).InitializeToDriverOk();

        rig.Device.Activations[^1].Transport.MarkNeedsReset("used ring at 0x1000 is read-only");

        var (level, message) = Assert.Single(logger.Lines, line => line.Message.Contains("needs reset", StringComparison.Ordinal));
        Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Warning, level);
        Assert.Contains("vda", message);
        Assert.Contains("used ring at 0x1000 is read-only", message);
    }

    [Fact]
    public void Disposing_the_root_bus_disposes_its_functions()
    {
        var rig = new VirtioPciRig();
        new LinuxVirtioPciDriver(rig).InitializeToDriverOk();
        rig.Pci.Root.Dispose();
        rig.Function.Dispose(); // the VMM owning it too: a second dispose does nothing
        Assert.Equal(1, rig.Device.DisposeCount);
        Assert.Empty(rig.Registrar.Active);
        Assert.Equal(0xffff_ffffu, rig.Pci.EcamRead32(rig.Slot, 0));
    }

    [Fact]
    public void A_device_failing_to_activate_is_marked_as_needing_reset_instead_of_crashing()
    {
        var device = new FakeVirtioDevice { ThrowOnActivate = new InvalidOperationException("ring outside RAM") };
        var rig = new VirtioPciRig(device);
        var driver = new LinuxVirtioPciDriver(rig);

        driver.InitializeToDriverOk();

        Assert.True((driver.Status & VirtioDeviceStatus.DEVICE_NEEDS_RESET) != 0);
    }

    [Fact]
    public void Disposing_the_function_disposes_the_device_and_vectors()
    {
        var rig = new VirtioPciRig();
        new LinuxVirtioPciDriver(rig).InitializeToDriverOk();
        rig.Function.Dispose();
        Assert.True(rig.Device.Disposed);
        Assert.All(rig.Msi.Vectors, vector => Assert.True(vector.Disposed));
        Assert.Empty(rig.Registrar.Active);
        Assert.Null(rig.Function.BarMappedAddress(0));
    }
}
