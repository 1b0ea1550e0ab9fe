using KvmSharp.Devices.Bus;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// A type-0 (endpoint) PCI function: identity registers, command/status with read-only and
/// write-1-to-clear bits, memory BARs the guest sizes (all-ones write, read back) and moves, a capability
/// list, and optionally MSI-X. While the command register's Memory Space bit is set, every BAR is mapped
/// on the MMIO bus at the address the guest programmed; clearing the bit or moving a BAR remaps it.
/// Derived classes declare BARs and capabilities in their constructor, before <see cref="Attach"/>.
/// </summary>
/// <remarks>
/// Configuration accesses are serialized by a lock (they are rare and come from any vCPU); they allocate
/// nothing, except when decoding toggles or a BAR moves, which rebuilds the MMIO bus's immutable range
/// table (bounded: a BAR keeps its bus range id).
/// </remarks>
public abstract class PciFunction : IPciFunction, IDisposable
{
    /// <summary>Command bits a guest may set; the others read as zero.</summary>
    private const int WritableCommandBits =
        PciRegs.PCI_COMMAND_IO | PciRegs.PCI_COMMAND_MEMORY | PciRegs.PCI_COMMAND_MASTER |
        PciRegs.PCI_COMMAND_PARITY | PciRegs.PCI_COMMAND_SERR | PciRegs.PCI_COMMAND_INTX_DISABLE;

    /// <summary>Capabilities start right after the standard header.</summary>
    private const int FirstCapabilityOffset = PciRegs.PCI_STD_HEADER_SIZEOF;

    private const int BarCount = 6;

    private readonly PciBar?[] _bars = new PciBar?[BarCount];
    private readonly PciBarRegion?[] _barRegions = new PciBarRegion?[BarCount];
    private readonly int[] _barRangeIds = [-1, -1, -1, -1, -1, -1];
    private readonly string[] _barRangeNames = new string[BarCount];
    private readonly ulong?[] _barMappedAt = new ulong?[BarCount];
    private readonly ulong?[] _barRefusedAt = new ulong?[BarCount];
    private int _lastCapabilityOffset;
    private int _nextCapabilityOffset = FirstCapabilityOffset;
    private int _msixCapabilityOffset;
    private DeviceBus? _mmioBus;
    private int _disposed;

    /// <param name="name">Short name for messages and bus ranges.</param>
    /// <param name="vendorId">PCI vendor id.</param>
    /// <param name="deviceId">PCI device id.</param>
    /// <param name="revisionId">Revision id.</param>
    /// <param name="classCode">24-bit class code: base class, sub-class, programming interface.</param>
    /// <param name="subsystemVendorId">Subsystem vendor id.</param>
    /// <param name="subsystemId">Subsystem id.</param>
    /// <param name="logger">Where BAR mapping is logged; none by default.</param>
    protected PciFunction(
        string name, ushort vendorId, ushort deviceId, byte revisionId, uint classCode,
        ushort subsystemVendorId, ushort subsystemId, ILogger? logger = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        Name = name;
        Logger = logger ?? NullLogger.Instance;
        Config.SetUInt16(PciRegs.PCI_VENDOR_ID, vendorId);
        Config.SetUInt16(PciRegs.PCI_DEVICE_ID, deviceId);
        Config.SetWritableMask(PciRegs.PCI_COMMAND, 2, WritableCommandBits);
        Config.SetWriteOneToClearMask(PciRegs.PCI_STATUS, 2, PciRegs.StatusWriteOneToClearBits);
        Config.SetUInt32(PciRegs.PCI_CLASS_REVISION, (classCode << 8) | revisionId);
        Config.SetWritableMask(PciRegs.PCI_CACHE_LINE_SIZE, 1, 0xff);
        Config.SetWritableMask(PciRegs.PCI_LATENCY_TIMER, 1, 0xff);
        Config.SetByte(PciRegs.PCI_HEADER_TYPE, PciRegs.PCI_HEADER_TYPE_NORMAL);
        Config.SetUInt16(PciRegs.PCI_SUBSYSTEM_VENDOR_ID, subsystemVendorId);
        Config.SetUInt16(PciRegs.PCI_SUBSYSTEM_ID, subsystemId);
        Config.SetWritableMask(PciRegs.PCI_INTERRUPT_LINE, 1, 0xff);
    }

    public string Name { get; }

    /// <summary>Where the root bus put the function (default until attached).</summary>
    public PciAddress Address { get; private set; }

    /// <summary>Whether <see cref="Attach"/> has run.</summary>
    public bool IsAttached => _mmioBus is not null;

    protected ILogger Logger { get; }

    /// <summary>The register file; touch it only in the constructor or under <see cref="ConfigLock"/>.</summary>
    protected PciConfigSpace Config { get; } = new();

    /// <summary>Serializes configuration accesses and BAR mapping.</summary>
    protected Lock ConfigLock { get; } = new();

    /// <summary>The MSI-X table announced by <see cref="AddMsixCapability"/>, if any.</summary>
    protected MsixTable? Msix { get; private set; }

    /// <summary>Offset of the MSI-X capability in configuration space (0: none).</summary>
    public int MsixCapabilityOffset => _msixCapabilityOffset;

    /// <summary>Whether the guest has set the command register's Memory Space bit.</summary>
    public bool MemoryDecodingEnabled
    {
        get
        {
            lock (ConfigLock)
            {
                return (Config.ReadUInt16(PciRegs.PCI_COMMAND) & PciRegs.PCI_COMMAND_MEMORY) != 0;
            }
        }
    }

    /// <summary>Whether the guest has set the command register's Interrupt Disable bit (INTx must stay deasserted).</summary>
    protected bool IntxDisabled => (Config.ReadUInt16(PciRegs.PCI_COMMAND) & PciRegs.PCI_COMMAND_INTX_DISABLE) != 0;

    /// <summary>Where BAR <paramref name="index"/> is mapped on the MMIO bus now (null: not mapped).</summary>
    public ulong? BarMappedAddress(int index)
    {
        lock (ConfigLock)
        {
            return _barMappedAt[index];
        }
    }

    /// <summary>The address the guest (or the attach-time placement) programmed into BAR <paramref name="index"/>.</summary>
    public ulong BarProgrammedAddress(int index)
    {
        lock (ConfigLock)
        {
            PciBar bar = _bars[index] ?? throw new ArgumentOutOfRangeException(nameof(index), index, $"{Name} has no BAR{index}.");
            return ProgrammedAddressLocked(bar);
        }
    }

    /// <summary>The BAR declared at <paramref name="index"/> (null for none, or the upper half of a 64-bit BAR).</summary>
    public PciBar? Bar(int index) => _bars[index];

    public void Attach(PciAddress address, DeviceBus mmioBus, IPciBarAllocator barAllocator)
    {
        ArgumentNullException.ThrowIfNull(mmioBus);
        ArgumentNullException.ThrowIfNull(barAllocator);
        lock (ConfigLock)
        {
            if (_mmioBus is not null)
            {
                throw new InvalidOperationException($"PCI function '{Name}' is already attached at {Address}.");
            }

            foreach (PciBar? bar in _bars)
            {
                if (bar is null)
                {
                    continue;
                }

                PciBarWindow window = bar.Is64Bit ? PciBarWindow.Above4G : PciBarWindow.Below4G;
                if (!barAllocator.TryAllocate(window, bar.Size, bar.Size, out ulong baseAddress))
                {
                    throw new InvalidOperationException(
                        $"PCI function '{Name}': no room for BAR{bar.Index} '{bar.Name}' (0x{bar.Size:x} bytes) in the {(bar.Is64Bit ? "64-bit" : "32-bit")} MMIO window; enlarge the window or attach fewer devices.");
                }

                ProgramBarLocked(bar, baseAddress);
            }

            Address = address;
            _mmioBus = mmioBus;
            UpdateBarMappingsLocked();
        }
    }

    public void ReadConfig(int offset, Span<byte> data)
    {
        if (ReadConfigWindow(offset, data))
        {
            return;
        }

        lock (ConfigLock)
        {
            Config.Read(offset, data);
        }
    }

    public void WriteConfig(int offset, ReadOnlySpan<byte> data)
    {
        if (WriteConfigWindow(offset, data))
        {
            return;
        }

        lock (ConfigLock)
        {
            Config.Write(offset, data);
            int end = offset + data.Length;
            if (Touches(offset, end, PciRegs.PCI_COMMAND, 2) || Touches(offset, end, PciRegs.PCI_BASE_ADDRESS_0, BarCount * 4))
            {
                UpdateBarMappingsLocked();
            }

            if (Msix is not null && Touches(offset, end, _msixCapabilityOffset + PciRegs.PCI_MSIX_FLAGS, 2))
            {
                ushort control = Config.ReadUInt16(_msixCapabilityOffset + PciRegs.PCI_MSIX_FLAGS);
                Msix.SetControl((control & PciRegs.PCI_MSIX_FLAGS_ENABLE) != 0, (control & PciRegs.PCI_MSIX_FLAGS_MASKALL) != 0);
            }

            OnConfigWritten(offset, data.Length);
        }
    }

    /// <summary>Declare a BAR (constructor only). Its register's size and type bits are set up so the guest can probe it.</summary>
    protected void AddBar(PciBar bar)
    {
        ArgumentNullException.ThrowIfNull(bar);
        if (_mmioBus is not null)
        {
            throw new InvalidOperationException($"PCI function '{Name}': BARs must be declared before attach.");
        }

        if (_bars[bar.Index] is not null || (bar.Is64Bit && _bars[bar.Index + 1] is not null) ||
            (bar.Index > 0 && _bars[bar.Index - 1] is { Is64Bit: true }))
        {
            throw new ArgumentException($"PCI function '{Name}': BAR{bar.Index} is already taken.", nameof(bar));
        }

        _bars[bar.Index] = bar;
        _barRegions[bar.Index] = new PciBarRegion(bar.Region);
        _barRangeNames[bar.Index] = $"{Name} BAR{bar.Index} {bar.Name}";
        int register = PciRegs.PCI_BASE_ADDRESS_0 + 4 * bar.Index;
        ulong addressMask = ~(bar.Size - 1);
        // Writable address bits above the size: writing all-ones reads back ~(size - 1), which is how the guest sizes a BAR.
        Config.SetWritableMask(register, 4, (uint)addressMask & 0xfffffff0);
        if (bar.Is64Bit)
        {
            Config.SetWritableMask(register + 4, 4, (uint)(addressMask >> 32));
        }

        ProgramBarLocked(bar, 0);
    }

    /// <summary>
    /// Append a capability (constructor only) and link it into the list; <paramref name="capability"/> holds
    /// the whole structure, its first byte the capability id (the next pointer is filled in here).
    /// Returns its offset in configuration space; make bytes writable with <see cref="PciConfigSpace.SetWritableMask"/>.
    /// </summary>
    protected int AddCapability(ReadOnlySpan<byte> capability)
    {
        if (capability.Length < 2)
        {
            throw new ArgumentException("a capability has at least an id and a next pointer.", nameof(capability));
        }

        int offset = _nextCapabilityOffset;
        if (offset + capability.Length > PciRegs.PCI_CFG_SPACE_SIZE)
        {
            throw new InvalidOperationException($"PCI function '{Name}': capabilities do not fit in the 256-byte configuration space.");
        }

        Config.Set(offset, capability);
        Config.SetByte(offset + PciRegs.PCI_CAP_LIST_NEXT, 0);
        if (_lastCapabilityOffset == 0)
        {
            Config.SetByte(PciRegs.PCI_CAPABILITY_LIST, (byte)offset);
            Config.SetUInt16(PciRegs.PCI_STATUS, (ushort)(Config.ReadUInt16(PciRegs.PCI_STATUS) | PciRegs.PCI_STATUS_CAP_LIST));
        }
        else
        {
            Config.SetByte(_lastCapabilityOffset + PciRegs.PCI_CAP_LIST_NEXT, (byte)offset);
        }

        _lastCapabilityOffset = offset;
        // The next one starts dword-aligned: Linux ignores the low two bits of a next pointer.
        _nextCapabilityOffset = (offset + capability.Length + 3) & ~3;
        return offset;
    }

    /// <summary>
    /// Announce <paramref name="table"/> through an MSI-X capability (constructor only): table and PBA at the given
    /// offsets (8-byte aligned) of BAR <paramref name="barIndex"/>. The derived class serves the table and PBA in that
    /// BAR through <see cref="MsixTable.ReadTable"/>, <see cref="MsixTable.WriteTable"/> and <see cref="MsixTable.ReadPba"/>.
    /// </summary>
    protected int AddMsixCapability(MsixTable table, int barIndex, uint tableOffset, uint pbaOffset)
    {
        ArgumentNullException.ThrowIfNull(table);
        if (Msix is not null)
        {
            throw new InvalidOperationException($"PCI function '{Name}' already has an MSI-X capability.");
        }

        if ((tableOffset & 7) != 0 || (pbaOffset & 7) != 0)
        {
            throw new ArgumentException("MSI-X table and PBA offsets must be 8-byte aligned.");
        }

        Span<byte> capability = stackalloc byte[PciRegs.PCI_CAP_MSIX_SIZEOF];
        capability.Clear();
        capability[PciRegs.PCI_CAP_LIST_ID] = PciRegs.PCI_CAP_ID_MSIX;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt16LittleEndian(capability[PciRegs.PCI_MSIX_FLAGS..], (ushort)(table.VectorCount - 1));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(capability[PciRegs.PCI_MSIX_TABLE..], tableOffset | (uint)barIndex);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(capability[PciRegs.PCI_MSIX_PBA..], pbaOffset | (uint)barIndex);
        int offset = AddCapability(capability);
        Config.SetWritableMask(offset + PciRegs.PCI_MSIX_FLAGS, 2, PciRegs.PCI_MSIX_FLAGS_ENABLE | PciRegs.PCI_MSIX_FLAGS_MASKALL);
        Msix = table;
        _msixCapabilityOffset = offset;
        return offset;
    }

    /// <summary>Set the Interrupt Pin register (constructor only): 1 = INTA#, 0 = no INTx.</summary>
    protected void SetInterruptPin(byte pin) => Config.SetByte(PciRegs.PCI_INTERRUPT_PIN, pin);

    /// <summary>Reflect the INTx line in the status register's Interrupt Status bit.</summary>
    protected void SetInterruptStatus(bool asserted)
    {
        lock (ConfigLock)
        {
            ushort status = Config.ReadUInt16(PciRegs.PCI_STATUS);
            status = asserted ? (ushort)(status | PciRegs.PCI_STATUS_INTERRUPT) : (ushort)(status & ~PciRegs.PCI_STATUS_INTERRUPT);
            Config.SetUInt16(PciRegs.PCI_STATUS, status);
        }
    }

    /// <summary>
    /// BAR <paramref name="bar"/> was mapped at <paramref name="baseAddress"/>, or unmapped (null). Called under
    /// <see cref="ConfigLock"/> on the vCPU thread whose configuration write caused it (or in <see cref="Attach"/>).
    /// </summary>
    protected virtual void OnBarMapped(PciBar bar, ulong? baseAddress)
    {
    }

    /// <summary>
    /// Serve a configuration read that is a window onto something else (virtio's pci_cfg_data) instead of
    /// stored bytes; true when handled. Called without <see cref="ConfigLock"/>, so the window may reach
    /// code that takes other locks or the configuration lock itself.
    /// </summary>
    protected virtual bool ReadConfigWindow(int offset, Span<byte> data) => false;

    /// <summary>Like <see cref="ReadConfigWindow"/>, for writes.</summary>
    protected virtual bool WriteConfigWindow(int offset, ReadOnlySpan<byte> data) => false;

    /// <summary>A configuration write was applied (under <see cref="ConfigLock"/>); for capabilities with side effects.</summary>
    protected virtual void OnConfigWritten(int offset, int length)
    {
    }

    /// <summary>Unmap the BARs and release what the function holds; a second call does nothing (the VMM and the bus may both own it).</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        Dispose(true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Unmap the BARs and release the MSI-X vectors.</summary>
    protected virtual void Dispose(bool disposing)
    {
        if (!disposing)
        {
            return;
        }

        lock (ConfigLock)
        {
            for (int i = 0; i < BarCount; i++)
            {
                if (_bars[i] is { } bar && _barMappedAt[i] is not null)
                {
                    _mmioBus!.Unregister(_barRegions[i]!);
                    _barMappedAt[i] = null;
                    OnBarMapped(bar, null);
                }
            }
        }

        Msix?.Dispose();
    }

    private static bool Touches(int start, int end, int register, int length) => start < register + length && register < end;

    private void ProgramBarLocked(PciBar bar, ulong baseAddress)
    {
        int register = PciRegs.PCI_BASE_ADDRESS_0 + 4 * bar.Index;
        Config.SetUInt32(register, ((uint)baseAddress & 0xfffffff0) | bar.Flags);
        if (bar.Is64Bit)
        {
            Config.SetUInt32(register + 4, (uint)(baseAddress >> 32));
        }
    }

    private ulong ProgrammedAddressLocked(PciBar bar)
    {
        int register = PciRegs.PCI_BASE_ADDRESS_0 + 4 * bar.Index;
        ulong low = Config.ReadUInt32(register) & 0xfffffff0u;
        return bar.Is64Bit ? low | ((ulong)Config.ReadUInt32(register + 4) << 32) : low;
    }

    private void UpdateBarMappingsLocked()
    {
        DeviceBus? bus = _mmioBus;
        if (bus is null)
        {
            return;
        }

        bool decoding = (Config.ReadUInt16(PciRegs.PCI_COMMAND) & PciRegs.PCI_COMMAND_MEMORY) != 0;
        for (int i = 0; i < BarCount; i++)
        {
            if (_bars[i] is not { } bar)
            {
                continue;
            }

            ulong programmed = ProgrammedAddressLocked(bar);
            ulong? mapped = _barMappedAt[i];
            if (mapped is not null && (!decoding || mapped.Value != programmed))
            {
                bus.Unregister(_barRegions[i]!);
                _barMappedAt[i] = null;
                PciLog.BarUnmapped(Logger, Name, Address, i, bar.Name);
                OnBarMapped(bar, null);
            }

            if (!decoding || _barMappedAt[i] is not null)
            {
                _barRefusedAt[i] = null;
                continue;
            }

            if (bus.TryRegister(programmed, bar.Size, _barRegions[i]!, _barRangeNames[i], ref _barRangeIds[i]))
            {
                _barMappedAt[i] = programmed;
                _barRefusedAt[i] = null;
                PciLog.BarMapped(Logger, Name, Address, i, bar.Name, programmed, bar.Size);
                OnBarMapped(bar, programmed);
            }
            else if (_barRefusedAt[i] != programmed)
            {
                // Logged once per refused address, so a guest retrying the same placement cannot flood the log.
                _barRefusedAt[i] = programmed;
                PciLog.BarRefused(Logger, Name, Address, i, bar.Name, programmed, bar.Size);
            }
        }
    }
}
