using System.Buffers.Binary;
using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Events;
using KvmSharp.Devices.Interrupts;
using KvmSharp.Devices.Memory;
using KvmSharp.Devices.Pci;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using static KvmSharp.Devices.Virtio.Transport.VirtioPciRegs;

namespace KvmSharp.Devices.Virtio.Transport;

/// <summary>
/// A virtio device on PCI, modern only (virtio 1.x, 4.1): vendor 0x1af4, device 0x1040 + type, revision 1;
/// vendor-specific capabilities pointing at the common configuration, notify doorbells, ISR and device
/// configuration, all in one 64-bit prefetchable BAR (<see cref="BarIndex"/>) that also holds the MSI-X
/// table and PBA (one vector per queue plus one for configuration changes).
/// </summary>
/// <remarks>
/// <para>Threads: configuration and BAR accesses come from vCPU threads; the device's
/// <see cref="IVirtioDevice.QueueNotify"/> is only ever called on the event loop: through a doorbell the
/// <see cref="IGuestNotifyRegistrar"/> took (an ioeventfd, registered at BAR base + queue_notify_off ×
/// <see cref="VirtioPciBarLayout.NotifyOffMultiplier"/> whenever the BAR is mapped), or, when it took none,
/// by posting the MMIO write to the <see cref="IEventLoop"/>. <see cref="IVirtioDevice.Activate"/> and
/// <see cref="IVirtioDevice.Reset"/> run on the vCPU thread that wrote the status, so the driver reads the
/// new status only once they are done (virtio 1.x, 2.4: reset completes before device_status reads 0).
/// QueueNotify is never called before Activate returned nor after Reset started (a notification in progress
/// finishes first), and once after each activation for every enabled queue, in case a kick raced DRIVER_OK.
/// A device that implements <see cref="IVirtioQueueDoorbells"/> (its queues are served by another process)
/// has its own eventfds registered as the doorbells instead, and sees QueueNotify only for doorbells the
/// registrar did not take.</para>
/// <para>Interrupts: with MSI-X enabled, a queue or configuration interrupt goes to the vector the driver
/// chose (none for VIRTIO_MSI_NO_VECTOR); without, it sets the ISR bit and asserts INTx if a line was given.</para>
/// </remarks>
public sealed class VirtioPciFunction : PciFunction
{
    /// <summary>The BAR (register pair 0-1) holding every virtio structure.</summary>
    public const int BarIndex = 0;

    /// <summary>Length of each queue's doorbell write as Linux issues it (a 16-bit queue index).</summary>
    public const int DoorbellWriteLength = 2;

    private readonly IVirtioDevice _device;
    private readonly IGuestMemory _memory;
    private readonly IEventLoop _eventLoop;
    private readonly IGuestNotifyRegistrar? _notifyRegistrar;
    private readonly IInterruptLine? _intx;
    private readonly ILogger _logger;
    private readonly VirtioPciCommonConfig _common;
    private readonly MsixTable _msix;
    private readonly Action[] _queueNotifyActions;
    private readonly IDisposable?[] _doorbells;
    private readonly Lock _stateLock = new();
    private readonly Lock _notifyLock = new();
    private readonly int _pciCfgCapability;
    private VirtioPciActivationSession? _session;
    private int _isr;

    /// <param name="device">The device behind the transport; the function owns it from now on and disposes it.</param>
    /// <param name="msiController">Source of the MSI-X vectors (queue count + 1).</param>
    /// <param name="memory">Guest RAM, handed to the device at activation.</param>
    /// <param name="eventLoop">Where queue notifications run.</param>
    /// <param name="notifyRegistrar">Takes the doorbells off the vCPU threads (ioeventfd); null: every doorbell write exits and is posted.</param>
    /// <param name="logger">Where resets, activation and DEVICE_NEEDS_RESET reasons are logged.</param>
    /// <param name="intx">INTx line for drivers that do not enable MSI-X; null: the function has no interrupt pin.</param>
    /// <param name="name">Name in messages; by default "virtio-" + the device type.</param>
    public VirtioPciFunction(
        IVirtioDevice device,
        IMsiController msiController,
        IGuestMemory memory,
        IEventLoop eventLoop,
        IGuestNotifyRegistrar? notifyRegistrar,
        ILogger<VirtioPciFunction>? logger = null,
        IInterruptLine? intx = null,
        string? name = null)
        : base(
            name ?? $"virtio-{device?.DeviceType.ToString().ToLowerInvariant()}",
            VirtioPciVendorId,
            (ushort)(VirtioPciModernDeviceIdBase + (ushort)(device ?? throw new ArgumentNullException(nameof(device))).DeviceType),
            VirtioPciModernRevision,
            ClassCodeFor(device.DeviceType),
            VirtioPciVendorId,
            (ushort)(VirtioPciModernDeviceIdBase + (ushort)device.DeviceType),
            logger)
    {
        ArgumentNullException.ThrowIfNull(msiController);
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(eventLoop);
        _device = device;
        _memory = memory;
        _eventLoop = eventLoop;
        _notifyRegistrar = notifyRegistrar;
        _intx = intx;
        _logger = logger ?? (ILogger)NullLogger.Instance;

        int queueCount = device.QueueMaxSizes.Count;
        if (queueCount > MaxQueues)
        {
            throw new ArgumentException($"virtio device '{Name}' has {queueCount} queues; virtio-pci in KvmSharp takes at most {MaxQueues}.", nameof(device));
        }

        _msix = new MsixTable(msiController, Math.Min(queueCount + 1, MsixTable.MaxVectors));
        _common = new VirtioPciCommonConfig(device.AvailableFeatures, device.QueueMaxSizes, _msix.VectorCount);
        Layout = new VirtioPciBarLayout(queueCount, _msix.VectorCount, _msix.TableSize, _msix.PbaSize);
        _queueNotifyActions = new Action[queueCount];
        for (int i = 0; i < queueCount; i++)
        {
            int queue = i;
            _queueNotifyActions[i] = () => DeliverQueueNotify(queue);
        }

        _doorbells = new IDisposable?[queueCount];

        AddBar(new PciBar(BarIndex, Layout.Size, is64Bit: true, prefetchable: true, new VirtioPciBarRegion(this), "virtio"));
        AddMsixCapability(_msix, BarIndex, (uint)Layout.MsixTableOffset, (uint)Layout.MsixPbaOffset);
        AddVirtioCapability(VIRTIO_PCI_CAP_COMMON_CFG, Layout.CommonOffset, Layout.CommonLength);
        AddVirtioCapability(VIRTIO_PCI_CAP_NOTIFY_CFG, Layout.NotifyOffset, Layout.NotifyLength, VirtioPciBarLayout.NotifyOffMultiplier);
        AddVirtioCapability(VIRTIO_PCI_CAP_ISR_CFG, Layout.IsrOffset, Layout.IsrLength);
        AddVirtioCapability(VIRTIO_PCI_CAP_DEVICE_CFG, Layout.DeviceConfigOffset, VirtioPciBarLayout.DeviceConfigLength);
        _pciCfgCapability = AddPciCfgCapability();
        if (intx is not null)
        {
            SetInterruptPin(1); // INTA#
        }
    }

    /// <summary>Queues one function takes: doorbells and MSI-X vectors stay within a few pages.</summary>
    public const int MaxQueues = 1024;

    public IVirtioDevice Device => _device;

    /// <summary>Where each structure sits in the BAR.</summary>
    public VirtioPciBarLayout Layout { get; }

    /// <summary>The device status as the driver reads it.</summary>
    public VirtioDeviceStatus DeviceStatus => _common.DeviceStatus;

    /// <summary>The features offered to the driver: the device's, less transport features KvmSharp lacks, plus VERSION_1.</summary>
    public ulong OfferedFeatures => _common.OfferedFeatures;

    /// <summary>The features the driver accepted (binding once FEATURES_OK is set).</summary>
    public ulong DriverFeatures
    {
        get
        {
            lock (_stateLock)
            {
                return _common.DriverFeatures;
            }
        }
    }

    /// <summary>Whether the device is activated (DRIVER_OK accepted, no reset since).</summary>
    public bool IsActive => Volatile.Read(ref _session) is not null;

    /// <summary>Doorbells the registrar took for the current BAR placement.</summary>
    public int RegisteredDoorbells
    {
        get
        {
            lock (ConfigLock)
            {
                return _doorbells.Count(static doorbell => doorbell is not null);
            }
        }
    }

    /// <summary>The MSI-X table (for the VMM's diagnostics and tests).</summary>
    public MsixTable MsixTable => _msix;

    internal void ReadBar(ulong offset, Span<byte> data)
    {
        if (InRegion(offset, data.Length, Layout.CommonOffset, 0x1000))
        {
            lock (_stateLock)
            {
                _common.Read(offset - Layout.CommonOffset, data);
            }
        }
        else if (InRegion(offset, data.Length, Layout.IsrOffset, 0x1000))
        {
            data.Clear();
            if (offset == Layout.IsrOffset)
            {
                // Reading the ISR acknowledges it (4.1.4.5): the bits clear and INTx drops.
                data[0] = (byte)Interlocked.Exchange(ref _isr, 0);
                UpdateIntx();
            }
        }
        else if (InRegion(offset, data.Length, Layout.DeviceConfigOffset, VirtioPciBarLayout.DeviceConfigLength))
        {
            _device.ReadConfig((uint)(offset - Layout.DeviceConfigOffset), data);
        }
        else if (InRegion(offset, data.Length, Layout.MsixTableOffset, (ulong)_msix.TableSize))
        {
            _msix.ReadTable(offset - Layout.MsixTableOffset, data);
        }
        else if (InRegion(offset, data.Length, Layout.MsixPbaOffset, (ulong)_msix.PbaSize))
        {
            _msix.ReadPba(offset - Layout.MsixPbaOffset, data);
        }
        else
        {
            data.Clear(); // doorbells and the gaps read as zero
        }
    }

    internal void WriteBar(ulong offset, ReadOnlySpan<byte> data)
    {
        if (InRegion(offset, data.Length, Layout.NotifyOffset, Layout.NotifyLength))
        {
            // A doorbell the registrar did not take (or a write of another width): post it, never run the device here.
            ulong queue = (offset - Layout.NotifyOffset) / VirtioPciBarLayout.NotifyOffMultiplier;
            if (queue < (ulong)_queueNotifyActions.Length)
            {
                _eventLoop.Post(_queueNotifyActions[queue]);
            }
        }
        else if (InRegion(offset, data.Length, Layout.CommonOffset, 0x1000))
        {
            WriteCommon(offset - Layout.CommonOffset, data);
        }
        else if (InRegion(offset, data.Length, Layout.DeviceConfigOffset, VirtioPciBarLayout.DeviceConfigLength))
        {
            _device.WriteConfig((uint)(offset - Layout.DeviceConfigOffset), data);
        }
        else if (InRegion(offset, data.Length, Layout.MsixTableOffset, (ulong)_msix.TableSize))
        {
            _msix.WriteTable(offset - Layout.MsixTableOffset, data);
        }

        // The ISR and the PBA are read-only; writes to the gaps are dropped.
    }

    internal void RaiseQueueInterrupt(int queue)
    {
        if ((uint)queue >= (uint)_queueNotifyActions.Length)
        {
            return;
        }

        if (_msix.Enabled)
        {
            ushort vector = _common.QueueMsixVector(queue);
            if (vector == VIRTIO_MSI_NO_VECTOR || _msix.Trigger(vector))
            {
                return;
            }
        }

        RaiseIntx(IsrQueue);
    }

    internal void RaiseConfigChange(bool bumpGeneration)
    {
        if (bumpGeneration)
        {
            _common.BumpConfigGeneration();
        }

        if (_msix.Enabled)
        {
            ushort vector = _common.ConfigMsixVector;
            if (vector == VIRTIO_MSI_NO_VECTOR || _msix.Trigger(vector))
            {
                return;
            }
        }

        RaiseIntx(VIRTIO_PCI_ISR_CONFIG);
    }

    internal void MarkNeedsReset(string reason)
    {
        if (_common.SetDeviceNeedsReset())
        {
            VirtioPciLog.NeedsReset(_logger, Name, reason);
            RaiseConfigChange(bumpGeneration: false);
        }
    }

    protected override void OnBarMapped(PciBar bar, ulong? baseAddress)
    {
        for (int i = 0; i < _doorbells.Length; i++)
        {
            _doorbells[i]?.Dispose();
            _doorbells[i] = null;
        }

        if (baseAddress is not { } barBase || _notifyRegistrar is null)
        {
            return;
        }

        for (int i = 0; i < _doorbells.Length; i++)
        {
            ulong doorbell = barBase + Layout.NotifyOffset + (ulong)i * VirtioPciBarLayout.NotifyOffMultiplier;
            try
            {
                _doorbells[i] = _device is IVirtioQueueDoorbells external
                    ? _notifyRegistrar.RegisterMmioNotify(doorbell, DoorbellWriteLength, external.QueueDoorbell(i))
                    : _notifyRegistrar.RegisterMmioNotify(doorbell, DoorbellWriteLength, _queueNotifyActions[i]);
            }
            catch (Exception exception)
            {
                // The guest chose the address (a BAR move); a host refusal must not escape the vCPU's config write.
                // The doorbell still works through the MMIO bus, with an exit per kick.
                VirtioPciLog.DoorbellRefused(_logger, Name, i, doorbell, exception);
            }
        }
    }

    protected override void OnConfigWritten(int offset, int length)
    {
        // Interrupt Disable or MSI-X Enable toggled: INTx follows them.
        int msixControl = MsixCapabilityOffset + PciRegs.PCI_MSIX_FLAGS;
        if ((offset <= PciRegs.PCI_COMMAND + 1 && PciRegs.PCI_COMMAND < offset + length) ||
            (offset <= msixControl + 1 && msixControl < offset + length))
        {
            UpdateIntx(); // ConfigLock is held already; Lock lets this thread take it again
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_stateLock)
            {
                Interlocked.Exchange(ref _session, null)?.Revoke();
            }

            _device.Dispose();
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// pci_cfg_data of the VIRTIO_PCI_CAP_PCI_CFG capability (4.1.4.9): an access there reaches the BAR at the
    /// bar/offset/length the driver wrote into the capability, decoding enabled or not. Misdirected windows
    /// (another BAR, a length other than 1, 2 or 4, an unaligned or out-of-range offset) read zero and drop writes.
    /// </summary>
    protected override bool ReadConfigWindow(int offset, Span<byte> data)
    {
        if (!IsPciCfgData(offset))
        {
            return false;
        }

        data.Clear();
        if (TryPciCfgTarget(out ulong barOffset, out int length) && data.Length >= length)
        {
            ReadBar(barOffset, data[..length]);
        }

        return true;
    }

    protected override bool WriteConfigWindow(int offset, ReadOnlySpan<byte> data)
    {
        if (!IsPciCfgData(offset))
        {
            return false;
        }

        if (TryPciCfgTarget(out ulong barOffset, out int length) && data.Length >= length)
        {
            WriteBar(barOffset, data[..length]);
        }

        return true;
    }

    private bool IsPciCfgData(int offset) => offset == _pciCfgCapability + StructVirtioPciCapSize;

    private bool TryPciCfgTarget(out ulong barOffset, out int length)
    {
        int bar;
        lock (ConfigLock)
        {
            bar = Config.ReadByte(_pciCfgCapability + VIRTIO_PCI_CAP_BAR);
            barOffset = Config.ReadUInt32(_pciCfgCapability + VIRTIO_PCI_CAP_OFFSET);
            length = (int)Math.Min(Config.ReadUInt32(_pciCfgCapability + VIRTIO_PCI_CAP_LENGTH), 8u);
        }

        return bar == BarIndex && length is 1 or 2 or 4 && barOffset % (ulong)length == 0 && barOffset + (ulong)length <= Layout.Size;
    }

    private int AddPciCfgCapability()
    {
        Span<byte> capability = stackalloc byte[StructVirtioPciCapSize + 4];
        capability.Clear();
        capability[VIRTIO_PCI_CAP_VNDR] = PciRegs.PCI_CAP_ID_VNDR;
        capability[VIRTIO_PCI_CAP_LEN] = (byte)capability.Length;
        capability[VIRTIO_PCI_CAP_CFG_TYPE] = VIRTIO_PCI_CAP_PCI_CFG;
        int offset = AddCapability(capability);
        Config.SetWritableMask(offset + VIRTIO_PCI_CAP_BAR, 1, 0xff);
        Config.SetWritableMask(offset + VIRTIO_PCI_CAP_OFFSET, 4, uint.MaxValue);
        Config.SetWritableMask(offset + VIRTIO_PCI_CAP_LENGTH, 4, uint.MaxValue);
        return offset;
    }

    private static bool InRegion(ulong offset, int length, ulong regionOffset, ulong regionLength) =>
        offset >= regionOffset && offset - regionOffset < regionLength && (ulong)length <= regionLength - (offset - regionOffset);

    /// <summary>A class code per device type, as guests' lspci expects (storage, network, communication, other).</summary>
    private static uint ClassCodeFor(VirtioDeviceType type) => type switch
    {
        VirtioDeviceType.Net => 0x020000,
        VirtioDeviceType.Block => 0x018000,
        VirtioDeviceType.Console => 0x078000,
        _ => 0xff0000,
    };

    private void AddVirtioCapability(int cfgType, ulong offset, uint length, uint? notifyOffMultiplier = null)
    {
        Span<byte> capability = stackalloc byte[notifyOffMultiplier is null ? StructVirtioPciCapSize : StructVirtioPciNotifyCapSize];
        capability.Clear();
        capability[VIRTIO_PCI_CAP_VNDR] = PciRegs.PCI_CAP_ID_VNDR;
        capability[VIRTIO_PCI_CAP_LEN] = (byte)capability.Length;
        capability[VIRTIO_PCI_CAP_CFG_TYPE] = (byte)cfgType;
        capability[VIRTIO_PCI_CAP_BAR] = BarIndex;
        BinaryPrimitives.WriteUInt32LittleEndian(capability[VIRTIO_PCI_CAP_OFFSET..], (uint)offset);
        BinaryPrimitives.WriteUInt32LittleEndian(capability[VIRTIO_PCI_CAP_LENGTH..], length);
        if (notifyOffMultiplier is { } multiplier)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(capability[VIRTIO_PCI_NOTIFY_CAP_MULT..], multiplier);
        }

        AddCapability(capability);
    }

    private void WriteCommon(ulong offset, ReadOnlySpan<byte> data)
    {
        lock (_stateLock)
        {
            VirtioDeviceStatus before = _common.DeviceStatus;
            VirtioPciStatusChange change = _common.Write(offset, data);
            VirtioDeviceStatus after = _common.DeviceStatus;
            if (change == VirtioPciStatusChange.Reset)
            {
                ResetLocked();
            }
            else if (change == VirtioPciStatusChange.Activate)
            {
                ActivateLocked();
            }
            else if ((before & VirtioDeviceStatus.FEATURES_OK) == 0 && (after & VirtioDeviceStatus.FEATURES_OK) == 0 &&
                     offset <= VIRTIO_PCI_COMMON_STATUS && VIRTIO_PCI_COMMON_STATUS < offset + (ulong)data.Length &&
                     (data[VIRTIO_PCI_COMMON_STATUS - (int)offset] & (byte)VirtioDeviceStatus.FEATURES_OK) != 0)
            {
                VirtioPciLog.FeaturesRefused(_logger, Name, _common.DriverFeatures, _common.OfferedFeatures);
            }
        }
    }

    private void ActivateLocked()
    {
        var session = new VirtioPciActivationSession(this);
        var activation = new VirtioActivation(_common.DriverFeatures, _common.SnapshotQueues(), _memory, session, session);
        VirtioPciLog.Activating(_logger, Name, activation.NegotiatedFeatures);
        try
        {
            _device.Activate(activation);
        }
        catch (Exception exception)
        {
            // A device refusing what the driver set up must not take the VMM down with it.
            VirtioPciLog.ActivationFailed(_logger, Name, exception);
            session.MarkNeedsReset($"activation failed: {exception.Message}");
            return;
        }

        // Published only once Activate returned, so QueueNotify never reaches a half-activated device. A kick
        // another vCPU raced in meanwhile found no session and was dropped: one catch-up notification per enabled
        // queue makes up for it (a spurious notification is harmless, virtio 1.x 2.7.13).
        lock (_notifyLock)
        {
            Volatile.Write(ref _session, session);
        }

        for (int queue = 0; queue < _queueNotifyActions.Length; queue++)
        {
            if (_common.QueueEnabled(queue))
            {
                _eventLoop.Post(_queueNotifyActions[queue]);
            }
        }
    }

    private void ResetLocked()
    {
        VirtioPciLog.Reset(_logger, Name);
        lock (_notifyLock)
        {
            // Waits for a notification in progress on the loop thread; later ones find no session.
            Interlocked.Exchange(ref _session, null)?.Revoke();
        }

        _device.Reset();
        _common.Reset();
        Interlocked.Exchange(ref _isr, 0);
        UpdateIntx();
    }

    private void DeliverQueueNotify(int queue)
    {
        lock (_notifyLock)
        {
            if (Volatile.Read(ref _session) is null || !_common.QueueEnabled(queue))
            {
                return;
            }

            _device.QueueNotify(queue);
        }
    }

    private void RaiseIntx(int isrBit)
    {
        Interlocked.Or(ref _isr, isrBit);
        UpdateIntx();
    }

    private void UpdateIntx()
    {
        if (_intx is null)
        {
            return;
        }

        // Computed and driven under one lock: two threads raising and acknowledging at once cannot leave the
        // line low with ISR bits set (a lost interrupt) or high with none.
        lock (ConfigLock)
        {
            bool asserted = Volatile.Read(ref _isr) != 0 && !IntxDisabled && !_msix.Enabled;
            SetInterruptStatus(asserted);
            _intx.SetLevel(asserted);
        }
    }
}
