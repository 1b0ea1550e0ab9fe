using System.Buffers.Binary;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// Configuration mechanism #1 (PCI 3.0, 3.2.2.3.2) on ports 0xCF8-0xCFF: a 32-bit write to 0xCF8 latches
/// CONFIG_ADDRESS; with its enable bit set, 1-, 2- or 4-byte accesses to 0xCFC-0xCFF reach that function's
/// register plus the port's offset. Other accesses to 0xCF8-0xCFB (e.g. a byte at 0xCF9, the reset
/// control register on some chipsets) are not configuration cycles: reads float to all-ones, writes are dropped.
/// </summary>
public sealed class PciConfigPorts : IBusDevice
{
    private const uint AddressWritableBits = PciConfigAddress.ConfigMechanism1Enable | 0x00ff_fffc;
    private const int DataPortOffset = 4;

    private readonly PciRootBus _root;
    private uint _address;

    internal PciConfigPorts(PciRootBus root) => _root = root;

    /// <summary>CONFIG_ADDRESS as last written (reserved bits read as zero).</summary>
    public uint ConfigAddress => Volatile.Read(ref _address);

    public void Read(ulong offset, Span<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(data, Volatile.Read(ref _address));
            return;
        }

        if (TryDecodeData(offset, data.Length, out PciConfigAddress target))
        {
            _root.ReadConfig(target.Function, target.Register, data);
            return;
        }

        data.Fill(0xff);
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset == 0 && data.Length == 4)
        {
            Volatile.Write(ref _address, BinaryPrimitives.ReadUInt32LittleEndian(data) & AddressWritableBits);
            return;
        }

        if (TryDecodeData(offset, data.Length, out PciConfigAddress target))
        {
            _root.WriteConfig(target.Function, target.Register, data);
        }
    }

    private bool TryDecodeData(ulong offset, int length, out PciConfigAddress target)
    {
        uint address = Volatile.Read(ref _address);
        ulong byteInDword = offset - DataPortOffset;
        if (offset < DataPortOffset || byteInDword + (ulong)length > 4 || (address & PciConfigAddress.ConfigMechanism1Enable) == 0)
        {
            target = default;
            return false;
        }

        PciConfigAddress decoded = PciConfigAddress.FromConfigMechanism1(address);
        target = decoded with { Register = decoded.Register + (int)byteInDword };
        return true;
    }
}
