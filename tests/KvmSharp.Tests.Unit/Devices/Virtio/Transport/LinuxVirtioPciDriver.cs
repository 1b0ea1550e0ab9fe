using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Virtio;
using KvmSharp.Tests.Unit.Devices.Pci;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Tests.Unit.Devices.Virtio.Transport;

/// <summary>
/// The guest side, in the order Linux's virtio_pci_modern driver and the virtio core issue their accesses
/// (register_virtio_device, virtio_dev_probe, vp_modern_find_vqs, virtio_device_ready): enough of a driver to
/// prove the device side against what a real guest does.
/// </summary>
internal sealed class LinuxVirtioPciDriver(PciRig pci, int slot)
{
    public const ulong LapicBase = 0xfee0_0000;

    private readonly PciRig _pci = pci;

    public LinuxVirtioPciDriver(VirtioPciRig rig)
        : this(rig.Pci, rig.Slot)
    {
    }

    public ulong BarBase { get; private set; }

    public ulong Common { get; private set; }

    public ulong Notify { get; private set; }

    public uint NotifyLength { get; private set; }

    public uint NotifyOffMultiplier { get; private set; }

    public ulong Isr { get; private set; }

    public ulong DeviceConfig { get; private set; }

    public int MsixCapability { get; private set; }

    public ulong MsixTable { get; private set; }

    public ushort NumQueues => _pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_NUMQ);

    public VirtioDeviceStatus Status => (VirtioDeviceStatus)_pci.Mmio.Read8(Common + VIRTIO_PCI_COMMON_STATUS);

    /// <summary>What virtio_pci_modern_probe and vp_modern_probe check and map; false where Linux would refuse the device.</summary>
    public bool Probe()
    {
        ushort vendor = _pci.EcamRead16(slot, PciRegs.PCI_VENDOR_ID);
        ushort device = _pci.EcamRead16(slot, PciRegs.PCI_DEVICE_ID);
        if (vendor != VirtioPciVendorId || device < 0x1040 || device > 0x107f)
        {
            return false;
        }

        _pci.EnableMemory(slot); // pci_enable_device + pci_set_master
        var found = new Dictionary<int, (int Bar, uint Offset, uint Length, int Position)>();
        foreach (var (position, id) in _pci.WalkCapabilities(slot))
        {
            if (id == PciRegs.PCI_CAP_ID_MSIX)
            {
                MsixCapability = position;
                continue;
            }

            if (id != PciRegs.PCI_CAP_ID_VNDR)
            {
                continue;
            }

            int type = _pci.EcamRead8(slot, position + VIRTIO_PCI_CAP_CFG_TYPE);
            int bar = _pci.EcamRead8(slot, position + VIRTIO_PCI_CAP_BAR);
            if (bar > 5 || found.ContainsKey(type))
            {
                continue; // the first capability of each type whose BAR is valid wins
            }

            found[type] = (bar, _pci.EcamRead32(slot, position + VIRTIO_PCI_CAP_OFFSET), _pci.EcamRead32(slot, position + VIRTIO_PCI_CAP_LENGTH), position);
        }

        if (!found.TryGetValue(VIRTIO_PCI_CAP_COMMON_CFG, out var common) || !found.TryGetValue(VIRTIO_PCI_CAP_ISR_CFG, out var isr) ||
            !found.TryGetValue(VIRTIO_PCI_CAP_NOTIFY_CFG, out var notify) || common.Length < StructVirtioPciCommonCfgSize || isr.Length < 1)
        {
            return false;
        }

        BarBase = ReadBar(common.Bar);
        Common = BarBase + common.Offset;
        Isr = ReadBar(isr.Bar) + isr.Offset;
        Notify = ReadBar(notify.Bar) + notify.Offset;
        NotifyLength = notify.Length;
        NotifyOffMultiplier = _pci.EcamRead32(slot, notify.Position + VIRTIO_PCI_NOTIFY_CAP_MULT);
        if (found.TryGetValue(VIRTIO_PCI_CAP_DEVICE_CFG, out var deviceConfig))
        {
            DeviceConfig = ReadBar(deviceConfig.Bar) + deviceConfig.Offset;
        }

        if (MsixCapability != 0)
        {
            uint table = _pci.EcamRead32(slot, MsixCapability + PciRegs.PCI_MSIX_TABLE);
            MsixTable = ReadBar((int)(table & PciRegs.PCI_MSIX_TABLE_BIR)) + (table & ~(uint)PciRegs.PCI_MSIX_TABLE_BIR);
        }

        return true;
    }

    /// <summary>vp_reset: write 0, then poll until the device reads back 0.</summary>
    public void Reset()
    {
        _pci.Mmio.Write8(Common + VIRTIO_PCI_COMMON_STATUS, 0);
        for (int polls = 0; _pci.Mmio.Read8(Common + VIRTIO_PCI_COMMON_STATUS) != 0; polls++)
        {
            if (polls > 1000)
            {
                throw new DriverGaveUpException("the device never finished its reset");
            }
        }
    }

    public void AddStatus(VirtioDeviceStatus bits) => _pci.Mmio.Write8(Common + VIRTIO_PCI_COMMON_STATUS, (byte)((byte)Status | (byte)bits));

    public ulong ReadDeviceFeatures()
    {
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_DFSELECT, 0);
        ulong low = _pci.Mmio.Read32(Common + VIRTIO_PCI_COMMON_DF);
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_DFSELECT, 1);
        return low | ((ulong)_pci.Mmio.Read32(Common + VIRTIO_PCI_COMMON_DF) << 32);
    }

    public void WriteDriverFeatures(ulong features)
    {
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_GFSELECT, 0);
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_GF, (uint)features);
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_GFSELECT, 1);
        _pci.Mmio.Write32(Common + VIRTIO_PCI_COMMON_GF, (uint)(features >> 32));
    }

    /// <summary>register_virtio_device + virtio_dev_probe up to virtio_features_ok; false when the device refuses the features.</summary>
    public bool NegotiateFeatures(Func<ulong, ulong> choose)
    {
        Reset();
        AddStatus(VirtioDeviceStatus.ACKNOWLEDGE);
        AddStatus(VirtioDeviceStatus.DRIVER);
        ulong accepted = choose(ReadDeviceFeatures());
        WriteDriverFeatures(accepted);
        AddStatus(VirtioDeviceStatus.FEATURES_OK);
        return (Status & VirtioDeviceStatus.FEATURES_OK) != 0;
    }

    /// <summary>pci_alloc_irq_vectors(MSI-X) as msix_capability_init does it: enable masked, program every entry, lift the function mask, unmask.</summary>
    public void EnableMsix(int vectors)
    {
        int control = MsixCapability + PciRegs.PCI_MSIX_FLAGS;
        _pci.EcamWrite16(slot, control, PciRegs.PCI_MSIX_FLAGS_ENABLE | PciRegs.PCI_MSIX_FLAGS_MASKALL);
        for (int vector = 0; vector < vectors; vector++)
        {
            ulong entry = MsixTable + (ulong)vector * PciRegs.PCI_MSIX_ENTRY_SIZE;
            _pci.Mmio.Write32(entry + PciRegs.PCI_MSIX_ENTRY_LOWER_ADDR, (uint)LapicBase);
            _pci.Mmio.Write32(entry + PciRegs.PCI_MSIX_ENTRY_UPPER_ADDR, 0);
            _pci.Mmio.Write32(entry + PciRegs.PCI_MSIX_ENTRY_DATA, (uint)(0x40 + vector));
        }

        _pci.EcamWrite16(slot, control, PciRegs.PCI_MSIX_FLAGS_ENABLE);
        for (int vector = 0; vector < vectors; vector++)
        {
            _pci.Mmio.Write32(MsixTable + (ulong)vector * PciRegs.PCI_MSIX_ENTRY_SIZE + PciRegs.PCI_MSIX_ENTRY_VECTOR_CTRL, 0);
        }
    }

    /// <summary>vp_config_vector: write, read back.</summary>
    public ushort SetConfigVector(ushort vector)
    {
        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_MSIX, vector);
        return _pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_MSIX);
    }

    /// <summary>setup_vq (modern) + vp_queue_vector; returns the doorbell address, or null where Linux would fail.</summary>
    public ulong? SetupQueue(int index, ushort size, ulong descriptors, ulong driverArea, ulong deviceArea, ushort vector)
    {
        if (index >= NumQueues)
        {
            return null;
        }

        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_Q_SELECT, (ushort)index);
        ushort max = _pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_Q_SIZE);
        if (max == 0 || _pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_Q_ENABLE) != 0)
        {
            return null;
        }

        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_Q_SIZE, Math.Min(size, max));
        WriteTwoPart(VIRTIO_PCI_COMMON_Q_DESCLO, descriptors);
        WriteTwoPart(VIRTIO_PCI_COMMON_Q_AVAILLO, driverArea);
        WriteTwoPart(VIRTIO_PCI_COMMON_Q_USEDLO, deviceArea);
        ushort notifyOff = _pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_Q_NOFF);
        if ((ulong)notifyOff * NotifyOffMultiplier + 2 > NotifyLength)
        {
            return null;
        }

        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_Q_MSIX, vector);
        if (_pci.Mmio.Read16(Common + VIRTIO_PCI_COMMON_Q_MSIX) != vector)
        {
            return null;
        }

        return Notify + (ulong)notifyOff * NotifyOffMultiplier;
    }

    public void EnableQueue(int index)
    {
        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_Q_SELECT, (ushort)index);
        _pci.Mmio.Write16(Common + VIRTIO_PCI_COMMON_Q_ENABLE, 1);
    }

    /// <summary>The whole sequence to DRIVER_OK with MSI-X: config vector 0, queue i on vector i + 1. Returns each queue's doorbell.</summary>
    public ulong[] InitializeToDriverOk(Func<ulong, ulong>? choose = null, ushort queueSize = 64)
    {
        if (!Probe() || !NegotiateFeatures(choose ?? (offered => offered)))
        {
            throw new DriverGaveUpException("the device was refused at probe or feature negotiation");
        }

        int queues = NumQueues;
        EnableMsix(queues + 1);
        if (SetConfigVector(0) != 0)
        {
            throw new DriverGaveUpException("config vector refused");
        }

        var doorbells = new ulong[queues];
        for (int i = 0; i < queues; i++)
        {
            doorbells[i] = SetupQueue(i, queueSize, 0x10_0000 + (ulong)i * 0x1_0000, 0x10_4000 + (ulong)i * 0x1_0000, 0x10_8000 + (ulong)i * 0x1_0000, (ushort)(i + 1))
                ?? throw new DriverGaveUpException($"queue {i} refused");
        }

        for (int i = 0; i < queues; i++)
        {
            EnableQueue(i);
        }

        AddStatus(VirtioDeviceStatus.DRIVER_OK);
        return doorbells;
    }

    /// <summary>vp_notify: a 16-bit write of the queue index to its doorbell.</summary>
    public void Kick(ulong doorbell, int queue) => _pci.Mmio.Write16(doorbell, (ushort)queue);

    private void WriteTwoPart(int lowOffset, ulong value)
    {
        _pci.Mmio.Write32(Common + (ulong)lowOffset, (uint)value);
        _pci.Mmio.Write32(Common + (ulong)lowOffset + 4, (uint)(value >> 32));
    }

    private ulong ReadBar(int index)
    {
        int register = PciRegs.PCI_BASE_ADDRESS_0 + 4 * index;
        uint low = _pci.EcamRead32(slot, register);
        ulong address = low & 0xffff_fff0;
        if ((low & PciRegs.PCI_BASE_ADDRESS_MEM_TYPE_64) != 0)
        {
            address |= (ulong)_pci.EcamRead32(slot, register + 4) << 32;
        }

        return address;
    }
}

/// <summary>The test driver stopped where Linux's would (the device refused something); not a device failure.</summary>
internal sealed class DriverGaveUpException(string message) : Exception(message);
