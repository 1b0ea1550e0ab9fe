using System.Buffers.Binary;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>
/// The registers of <c>struct virtio_pci_common_cfg</c> (virtio 1.x, 4.1.4.3) and the rules the device
/// side enforces: VERSION_1 is offered and required, FEATURES_OK sticks only when the driver accepted
/// nothing that was not offered, queue sizes are powers of two no larger than the device's maximum,
/// a queue's registers freeze once it is enabled, and an MSI-X vector beyond the table reads back as
/// NO_VECTOR. Accesses of any width and alignment are taken byte by byte against a snapshot of the
/// registers, so a hostile driver's odd access cannot tear a field or throw.
/// </summary>
/// <remarks>
/// Not thread-safe: the owning function serializes driver accesses. Three members are also read or
/// changed from other threads, lock-free: <see cref="QueueMsixVector"/> and <see cref="ConfigMsixVector"/>
/// (interrupt delivery), <see cref="SetDeviceNeedsReset"/> and <see cref="BumpConfigGeneration"/> (device threads).
/// </remarks>
public sealed class VirtioPciCommonConfig
{
    /// <summary>Transport features KvmSharp cannot provide, stripped from what a device offers: notification data, ring reset (no queue_reset register), SR-IOV, admin queues.</summary>
    public const ulong UnsupportedTransportFeatures = (1UL << 38) | (1UL << 40) | (1UL << 37) | (1UL << 41);

    private const byte DriverWritableStatus = (byte)(VirtioDeviceStatus.ACKNOWLEDGE | VirtioDeviceStatus.DRIVER |
        VirtioDeviceStatus.DRIVER_OK | VirtioDeviceStatus.FEATURES_OK | VirtioDeviceStatus.FAILED);

    private readonly ushort[] _queueMaxSizes;
    private readonly ushort[] _queueSizes;
    private readonly ushort[] _queueMsixVectors;
    private readonly bool[] _queueEnabled;
    private readonly ulong[] _queueDescriptorTables;
    private readonly ulong[] _queueDriverAreas;
    private readonly ulong[] _queueDeviceAreas;
    private readonly int _msixVectorCount;
    private uint _deviceFeatureSelect;
    private uint _driverFeatureSelect;
    private ulong _driverFeatures;
    private int _configMsixVector;
    private int _deviceStatus;
    private int _configGeneration;
    private ushort _queueSelect;

    /// <param name="deviceFeatures">Features the device offers; VERSION_1 is added, transport features KvmSharp lacks are removed.</param>
    /// <param name="queueMaxSizes">Each queue's maximum size (a power of two; 0 = queue not available).</param>
    /// <param name="msixVectorCount">Entries of the MSI-X table; vectors at or beyond it are refused.</param>
    public VirtioPciCommonConfig(ulong deviceFeatures, IReadOnlyList<ushort> queueMaxSizes, int msixVectorCount)
    {
        ArgumentNullException.ThrowIfNull(queueMaxSizes);
        OfferedFeatures = (deviceFeatures & ~UnsupportedTransportFeatures) | VirtioFeatureBits.VIRTIO_F_VERSION_1;
        _queueMaxSizes = [.. queueMaxSizes];
        foreach (ushort max in _queueMaxSizes)
        {
            if (max != 0 && !ushort.IsPow2(max))
            {
                throw new ArgumentException($"a virtqueue's maximum size must be a power of two (got {max}).", nameof(queueMaxSizes));
            }
        }

        int count = _queueMaxSizes.Length;
        _queueSizes = new ushort[count];
        _queueMsixVectors = new ushort[count];
        _queueEnabled = new bool[count];
        _queueDescriptorTables = new ulong[count];
        _queueDriverAreas = new ulong[count];
        _queueDeviceAreas = new ulong[count];
        _msixVectorCount = msixVectorCount;
        Reset();
    }

    /// <summary>The features offered to the driver (the device's, plus VERSION_1).</summary>
    public ulong OfferedFeatures { get; }

    /// <summary>What the driver accepted (meaningful once FEATURES_OK stuck).</summary>
    public ulong DriverFeatures => _driverFeatures;

    public int QueueCount => _queueMaxSizes.Length;

    public VirtioDeviceStatus DeviceStatus => (VirtioDeviceStatus)(byte)Volatile.Read(ref _deviceStatus);

    public byte ConfigGeneration => (byte)Volatile.Read(ref _configGeneration);

    /// <summary>The MSI-X vector for configuration changes (NO_VECTOR: none).</summary>
    public ushort ConfigMsixVector => (ushort)Volatile.Read(ref _configMsixVector);

    public ushort QueueMsixVector(int queue) => Volatile.Read(ref _queueMsixVectors[queue]);

    public bool QueueEnabled(int queue) => Volatile.Read(ref _queueEnabled[queue]);

    /// <summary>The queues as the driver configured them, for <see cref="VirtioActivation"/>.</summary>
    public VirtqueueConfig[] SnapshotQueues()
    {
        var queues = new VirtqueueConfig[QueueCount];
        for (int i = 0; i < queues.Length; i++)
        {
            queues[i] = new VirtqueueConfig(
                i, _queueSizes[i], _queueEnabled[i],
                new Memory.GuestAddress(_queueDescriptorTables[i]),
                new Memory.GuestAddress(_queueDriverAreas[i]),
                new Memory.GuestAddress(_queueDeviceAreas[i]));
        }

        return queues;
    }

    /// <summary>Every register back to its reset value (configuration generation excepted: it only moves forward).</summary>
    public void Reset()
    {
        _deviceFeatureSelect = 0;
        _driverFeatureSelect = 0;
        _driverFeatures = 0;
        Volatile.Write(ref _configMsixVector, VIRTIO_MSI_NO_VECTOR);
        Volatile.Write(ref _deviceStatus, 0);
        _queueSelect = 0;
        for (int i = 0; i < _queueMaxSizes.Length; i++)
        {
            _queueSizes[i] = _queueMaxSizes[i];
            Volatile.Write(ref _queueMsixVectors[i], (ushort)VIRTIO_MSI_NO_VECTOR);
            Volatile.Write(ref _queueEnabled[i], false);
            _queueDescriptorTables[i] = 0;
            _queueDriverAreas[i] = 0;
            _queueDeviceAreas[i] = 0;
        }
    }

    /// <summary>Set DEVICE_NEEDS_RESET (any thread). False when it was already set.</summary>
    public bool SetDeviceNeedsReset() =>
        (Interlocked.Or(ref _deviceStatus, (int)VirtioDeviceStatus.DEVICE_NEEDS_RESET) & (int)VirtioDeviceStatus.DEVICE_NEEDS_RESET) == 0;

    /// <summary>The device's configuration changed: the driver re-reads it when the generation moved (any thread).</summary>
    public void BumpConfigGeneration() => Interlocked.Increment(ref _configGeneration);

    /// <summary>A driver read of <paramref name="data"/>.Length bytes at <paramref name="offset"/>; bytes past the structure read as zero.</summary>
    public void Read(ulong offset, Span<byte> data)
    {
        Span<byte> registers = stackalloc byte[StructVirtioPciCommonCfgSize];
        Snapshot(registers);
        for (int i = 0; i < data.Length; i++)
        {
            ulong at = offset + (ulong)i;
            data[i] = at < (ulong)registers.Length ? registers[(int)at] : (byte)0;
        }
    }

    /// <summary>A driver write; returns what the transport must do about it (reset, activate).</summary>
    public VirtioPciStatusChange Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset >= StructVirtioPciCommonCfgSize || data.IsEmpty)
        {
            return VirtioPciStatusChange.None;
        }

        Span<byte> registers = stackalloc byte[StructVirtioPciCommonCfgSize];
        Snapshot(registers);
        int start = (int)offset;
        int end = Math.Min(StructVirtioPciCommonCfgSize, start + data.Length);
        data[..(end - start)].CopyTo(registers[start..]);

        // Fields are applied in address order; queue_select is applied before the queue fields after it.
        VirtioPciStatusChange change = VirtioPciStatusChange.None;
        if (Touches(start, end, VIRTIO_PCI_COMMON_DFSELECT, 4))
        {
            _deviceFeatureSelect = U32(registers, VIRTIO_PCI_COMMON_DFSELECT);
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_GFSELECT, 4))
        {
            _driverFeatureSelect = U32(registers, VIRTIO_PCI_COMMON_GFSELECT);
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_GF, 4))
        {
            WriteDriverFeatures(U32(registers, VIRTIO_PCI_COMMON_GF));
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_MSIX, 2))
        {
            Volatile.Write(ref _configMsixVector, CheckedVector(U16(registers, VIRTIO_PCI_COMMON_MSIX)));
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_STATUS, 1))
        {
            change = WriteStatus(registers[VIRTIO_PCI_COMMON_STATUS]);
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_Q_SELECT, 2))
        {
            _queueSelect = U16(registers, VIRTIO_PCI_COMMON_Q_SELECT);
        }

        int queue = _queueSelect;
        if (queue >= QueueCount || change == VirtioPciStatusChange.Reset)
        {
            return change;
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_Q_MSIX, 2))
        {
            Volatile.Write(ref _queueMsixVectors[queue], CheckedVector(U16(registers, VIRTIO_PCI_COMMON_Q_MSIX)));
        }

        // The driver sets a queue up before enabling it and before DRIVER_OK; later writes would pull the ring from under the device.
        if (_queueEnabled[queue] || (DeviceStatus & VirtioDeviceStatus.DRIVER_OK) != 0 || _queueMaxSizes[queue] == 0)
        {
            return change;
        }

        if (Touches(start, end, VIRTIO_PCI_COMMON_Q_SIZE, 2))
        {
            ushort size = U16(registers, VIRTIO_PCI_COMMON_Q_SIZE);
            if (ushort.IsPow2(size) && size <= _queueMaxSizes[queue])
            {
                _queueSizes[queue] = size;
            }
        }

        WriteAddressHalves(registers, start, end, VIRTIO_PCI_COMMON_Q_DESCLO, ref _queueDescriptorTables[queue]);
        WriteAddressHalves(registers, start, end, VIRTIO_PCI_COMMON_Q_AVAILLO, ref _queueDriverAreas[queue]);
        WriteAddressHalves(registers, start, end, VIRTIO_PCI_COMMON_Q_USEDLO, ref _queueDeviceAreas[queue]);

        // Only 1 may be written (4.1.4.3.2); writing 0 is ignored.
        if (Touches(start, end, VIRTIO_PCI_COMMON_Q_ENABLE, 2) && U16(registers, VIRTIO_PCI_COMMON_Q_ENABLE) == 1)
        {
            Volatile.Write(ref _queueEnabled[queue], true);
        }

        return change;
    }

    private static bool Touches(int start, int end, int field, int length) => start < field + length && field < end;

    private static uint U32(ReadOnlySpan<byte> registers, int offset) => BinaryPrimitives.ReadUInt32LittleEndian(registers[offset..]);

    private static ushort U16(ReadOnlySpan<byte> registers, int offset) => BinaryPrimitives.ReadUInt16LittleEndian(registers[offset..]);

    private static void WriteAddressHalves(ReadOnlySpan<byte> registers, int start, int end, int lowOffset, ref ulong address)
    {
        if (Touches(start, end, lowOffset, 4))
        {
            address = (address & 0xffff_ffff_0000_0000) | U32(registers, lowOffset);
        }

        if (Touches(start, end, lowOffset + 4, 4))
        {
            address = (address & 0xffff_ffff) | ((ulong)U32(registers, lowOffset + 4) << 32);
        }
    }

    private void Snapshot(Span<byte> registers)
    {
        registers.Clear();
        int queue = _queueSelect;
        bool exists = queue < QueueCount;
        uint deviceFeatures = _deviceFeatureSelect switch
        {
            0 => (uint)OfferedFeatures,
            1 => (uint)(OfferedFeatures >> 32),
            _ => 0,
        };
        uint driverFeatures = _driverFeatureSelect switch
        {
            0 => (uint)_driverFeatures,
            1 => (uint)(_driverFeatures >> 32),
            _ => 0,
        };
        BinaryPrimitives.WriteUInt32LittleEndian(registers[VIRTIO_PCI_COMMON_DFSELECT..], _deviceFeatureSelect);
        BinaryPrimitives.WriteUInt32LittleEndian(registers[VIRTIO_PCI_COMMON_DF..], deviceFeatures);
        BinaryPrimitives.WriteUInt32LittleEndian(registers[VIRTIO_PCI_COMMON_GFSELECT..], _driverFeatureSelect);
        BinaryPrimitives.WriteUInt32LittleEndian(registers[VIRTIO_PCI_COMMON_GF..], driverFeatures);
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_MSIX..], ConfigMsixVector);
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_NUMQ..], (ushort)QueueCount);
        registers[VIRTIO_PCI_COMMON_STATUS] = (byte)DeviceStatus;
        registers[VIRTIO_PCI_COMMON_CFGGENERATION] = ConfigGeneration;
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_Q_SELECT..], _queueSelect);
        if (!exists)
        {
            return; // an unavailable queue reads queue_size 0 and nothing else
        }

        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_Q_SIZE..], _queueSizes[queue]);
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_Q_MSIX..], QueueMsixVector(queue));
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_Q_ENABLE..], (ushort)(_queueEnabled[queue] ? 1 : 0));
        BinaryPrimitives.WriteUInt16LittleEndian(registers[VIRTIO_PCI_COMMON_Q_NOFF..], (ushort)queue);
        BinaryPrimitives.WriteUInt64LittleEndian(registers[VIRTIO_PCI_COMMON_Q_DESCLO..], _queueDescriptorTables[queue]);
        BinaryPrimitives.WriteUInt64LittleEndian(registers[VIRTIO_PCI_COMMON_Q_AVAILLO..], _queueDriverAreas[queue]);
        BinaryPrimitives.WriteUInt64LittleEndian(registers[VIRTIO_PCI_COMMON_Q_USEDLO..], _queueDeviceAreas[queue]);
    }

    private void WriteDriverFeatures(uint value)
    {
        // Frozen once FEATURES_OK stuck: the device already agreed to what was there.
        if ((DeviceStatus & VirtioDeviceStatus.FEATURES_OK) != 0)
        {
            return;
        }

        _driverFeatures = _driverFeatureSelect switch
        {
            0 => (_driverFeatures & 0xffff_ffff_0000_0000) | value,
            1 => (_driverFeatures & 0xffff_ffff) | ((ulong)value << 32),
            _ => _driverFeatures,
        };
    }

    private VirtioPciStatusChange WriteStatus(byte written)
    {
        if (written == 0)
        {
            return VirtioPciStatusChange.Reset;
        }

        var old = DeviceStatus;
        // Bits only accumulate until a reset; DEVICE_NEEDS_RESET is the device's to set.
        var status = old | (VirtioDeviceStatus)(written & DriverWritableStatus);
        if ((status & VirtioDeviceStatus.FEATURES_OK) != 0 && (old & VirtioDeviceStatus.FEATURES_OK) == 0 && !FeaturesAcceptable())
        {
            status &= ~VirtioDeviceStatus.FEATURES_OK; // the driver reads FEATURES_OK back and gives up (3.1.1)
        }

        var change = VirtioPciStatusChange.None;
        if ((status & VirtioDeviceStatus.DRIVER_OK) != 0 && (old & VirtioDeviceStatus.DRIVER_OK) == 0)
        {
            if ((status & VirtioDeviceStatus.FEATURES_OK) == 0 || (status & (VirtioDeviceStatus.FAILED | VirtioDeviceStatus.DEVICE_NEEDS_RESET)) != 0)
            {
                status &= ~VirtioDeviceStatus.DRIVER_OK; // nothing negotiated (or given up): nothing to drive
            }
            else
            {
                change = VirtioPciStatusChange.Activate;
            }
        }

        // A concurrent SetDeviceNeedsReset must survive this write: merge rather than overwrite.
        int current;
        do
        {
            current = Volatile.Read(ref _deviceStatus);
        }
        while (Interlocked.CompareExchange(ref _deviceStatus, (int)status | (current & (int)VirtioDeviceStatus.DEVICE_NEEDS_RESET), current) != current);

        return change;
    }

    private bool FeaturesAcceptable() =>
        (_driverFeatures & ~OfferedFeatures) == 0 && (_driverFeatures & VirtioFeatureBits.VIRTIO_F_VERSION_1) != 0;

    private ushort CheckedVector(ushort vector) => vector < _msixVectorCount ? vector : (ushort)VIRTIO_MSI_NO_VECTOR;
}
