using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// PCI bus 0 behind the host bridge: the functions in its 32 slots, reached through configuration
/// mechanism #1 (<see cref="ConfigPorts"/>, ports 0xCF8-0xCFF) and ECAM (<see cref="Ecam"/>, bus 0 only),
/// and the MMIO bus their BARs are mapped on. The host bridge sits at 00:00.0.
/// </summary>
/// <example>
/// The VMM wires it once:
/// <code>
/// var pci = new PciRootBus(mmioBus, barAllocator);
/// pioBus.Register(PciRootBus.ConfigPortsBase, PciRootBus.ConfigPortsLength, pci.ConfigPorts, "pci-conf1");
/// mmioBus.Register(ecamBase, PciEcam.SizeFor(PciRootBus.BusCount), pci.Ecam, "pci-ecam"); // + an MCFG entry for buses 0..0
/// pci.Attach(new VirtioPciFunction(device, msi, memory, loop, notifier, logger));
/// </code>
/// </example>
/// <remarks>Configuration accesses look functions up without a lock (the slot table is an immutable array swapped on attach).</remarks>
public sealed class PciRootBus : IDisposable
{
    /// <summary>First port of configuration mechanism #1 (CONFIG_ADDRESS).</summary>
    public const ulong ConfigPortsBase = 0xcf8;

    /// <summary>Ports of configuration mechanism #1: CONFIG_ADDRESS (0xCF8-0xCFB) and CONFIG_DATA (0xCFC-0xCFF).</summary>
    public const ulong ConfigPortsLength = 8;

    /// <summary>Buses the root complex decodes (bus 0 only: no bridges).</summary>
    public const int BusCount = 1;

    private readonly DeviceBus _mmioBus;
    private readonly IPciBarAllocator _barAllocator;
    private readonly Lock _attachLock = new();
    private IPciFunction?[] _functions = new IPciFunction?[PciAddress.DevicesPerBus * PciAddress.FunctionsPerDevice];

    /// <param name="mmioBus">Where BARs are mapped while the guest enables their decoding.</param>
    /// <param name="barAllocator">Places BARs at attach time (32-bit window below 4 GiB, 64-bit above RAM).</param>
    public PciRootBus(DeviceBus mmioBus, IPciBarAllocator barAllocator)
    {
        ArgumentNullException.ThrowIfNull(mmioBus);
        ArgumentNullException.ThrowIfNull(barAllocator);
        _mmioBus = mmioBus;
        _barAllocator = barAllocator;
        ConfigPorts = new PciConfigPorts(this);
        Ecam = new PciEcam(this, BusCount);
        HostBridge = new PciHostBridge();
        Attach(HostBridge, device: 0);
    }

    /// <summary>Configuration mechanism #1; register it on the port bus at <see cref="ConfigPortsBase"/>, <see cref="ConfigPortsLength"/> ports.</summary>
    public PciConfigPorts ConfigPorts { get; }

    /// <summary>ECAM for bus 0; register it on the MMIO bus at the base the MCFG table names, <see cref="PciEcam.Size"/> bytes.</summary>
    public PciEcam Ecam { get; }

    /// <summary>The host bridge at 00:00.0.</summary>
    public PciHostBridge HostBridge { get; }

    /// <summary>
    /// Put <paramref name="function"/> in slot <paramref name="device"/> (function 0), or in the first free slot,
    /// place its BARs and connect it to the MMIO bus. Call before the guest runs (or with the guest told of hotplug).
    /// </summary>
    /// <returns>The function's address.</returns>
    /// <exception cref="InvalidOperationException">The slot is taken, every slot is taken, or a BAR does not fit its window.</exception>
    public PciAddress Attach(IPciFunction function, int? device = null)
    {
        ArgumentNullException.ThrowIfNull(function);
        if (device is < 0 or >= PciAddress.DevicesPerBus)
        {
            throw new ArgumentOutOfRangeException(nameof(device), device, $"a PCI slot is 0..{PciAddress.DevicesPerBus - 1}.");
        }

        lock (_attachLock)
        {
            IPciFunction?[] current = _functions;
            int slot = device ?? -1;
            if (slot < 0)
            {
                for (int candidate = 0; candidate < PciAddress.DevicesPerBus; candidate++)
                {
                    if (current[candidate * PciAddress.FunctionsPerDevice] is null)
                    {
                        slot = candidate;
                        break;
                    }
                }

                if (slot < 0)
                {
                    throw new InvalidOperationException($"PCI bus 0 is full: no slot left for '{function.Name}'.");
                }
            }
            else if (current[slot * PciAddress.FunctionsPerDevice] is { } taken)
            {
                throw new InvalidOperationException($"PCI slot {slot} is already taken by '{taken.Name}'; cannot attach '{function.Name}' there.");
            }

            var address = new PciAddress(0, (byte)slot, 0);
            function.Attach(address, _mmioBus, _barAllocator);
            var next = (IPciFunction?[])current.Clone();
            next[slot * PciAddress.FunctionsPerDevice] = function;
            Volatile.Write(ref _functions, next);
            return address;
        }
    }

    /// <summary>Dispose every attached function that is disposable (unmapping its BARs, releasing its vectors and device); the bus answers all-ones afterwards.</summary>
    public void Dispose()
    {
        IPciFunction?[] functions;
        lock (_attachLock)
        {
            functions = _functions;
            Volatile.Write(ref _functions, new IPciFunction?[functions.Length]);
        }

        foreach (IPciFunction? function in functions)
        {
            (function as IDisposable)?.Dispose();
        }
    }

    /// <summary>The function at <paramref name="address"/>, or null.</summary>
    public IPciFunction? FunctionAt(PciAddress address) =>
        address.Bus == 0 && address.Device < PciAddress.DevicesPerBus && address.Function < PciAddress.FunctionsPerDevice
            ? Volatile.Read(ref _functions)[address.Device * PciAddress.FunctionsPerDevice + address.Function]
            : null;

    /// <summary>
    /// A configuration read as both mechanisms issue it: 1, 2 or 4 bytes, naturally aligned. A missing
    /// function or a malformed access reads all-ones, as a master abort does on real buses.
    /// </summary>
    internal void ReadConfig(PciAddress address, int register, Span<byte> data)
    {
        IPciFunction? function = FunctionAt(address);
        if (function is null || !IsWellFormed(register, data.Length))
        {
            data.Fill(0xff);
            return;
        }

        function.ReadConfig(register, data);
    }

    /// <summary>A configuration write; dropped for a missing function or a malformed access.</summary>
    internal void WriteConfig(PciAddress address, int register, ReadOnlySpan<byte> data)
    {
        IPciFunction? function = FunctionAt(address);
        if (function is null || !IsWellFormed(register, data.Length))
        {
            return;
        }

        function.WriteConfig(register, data);
    }

    private static bool IsWellFormed(int register, int length) =>
        length is 1 or 2 or 4 && (register & (length - 1)) == 0 && (uint)register < PciRegs.PCI_CFG_SPACE_EXP_SIZE;
}
