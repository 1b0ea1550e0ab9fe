using System.Buffers.Binary;

namespace KvmSharp.Devices.Pci;

/// <summary>
/// The 256 bytes of a function's conventional configuration space, with per-bit write semantics: a bit
/// is read-only unless its writable mask bit is set, and a write-1-to-clear bit is cleared by writing 1.
/// What a write means beyond storing bits (BARs moving, MSI-X enable) is the owning function's business.
/// Not thread-safe: <see cref="PciFunction"/> serializes access.
/// </summary>
public sealed class PciConfigSpace
{
    private readonly byte[] _values = new byte[PciRegs.PCI_CFG_SPACE_SIZE];
    private readonly byte[] _writable = new byte[PciRegs.PCI_CFG_SPACE_SIZE];
    private readonly byte[] _writeOneToClear = new byte[PciRegs.PCI_CFG_SPACE_SIZE];

    public byte ReadByte(int offset) => _values[offset];

    public ushort ReadUInt16(int offset) => BinaryPrimitives.ReadUInt16LittleEndian(_values.AsSpan(offset, 2));

    public uint ReadUInt32(int offset) => BinaryPrimitives.ReadUInt32LittleEndian(_values.AsSpan(offset, 4));

    /// <summary>Guest read: bytes at or past 256 (the extended space of a conventional function) read as zero.</summary>
    public void Read(int offset, Span<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            int at = offset + i;
            data[i] = (uint)at < PciRegs.PCI_CFG_SPACE_SIZE ? _values[at] : (byte)0;
        }
    }

    /// <summary>Guest write: only writable bits change, write-1-to-clear bits clear where a 1 is written; bytes past 256 are dropped.</summary>
    public void Write(int offset, ReadOnlySpan<byte> data)
    {
        for (int i = 0; i < data.Length; i++)
        {
            int at = offset + i;
            if ((uint)at >= PciRegs.PCI_CFG_SPACE_SIZE)
            {
                break;
            }

            byte written = data[i];
            byte value = (byte)((_values[at] & ~_writable[at]) | (written & _writable[at]));
            _values[at] = (byte)(value & ~(written & _writeOneToClear[at]));
        }
    }

    /// <summary>Set bytes as the device sees them (read-only bits included): identity, capabilities, status.</summary>
    public void Set(int offset, ReadOnlySpan<byte> value) => value.CopyTo(_values.AsSpan(offset));

    public void SetByte(int offset, byte value) => _values[offset] = value;

    public void SetUInt16(int offset, ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(_values.AsSpan(offset, 2), value);

    public void SetUInt32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_values.AsSpan(offset, 4), value);

    /// <summary>Which bits of the <paramref name="length"/>-byte register at <paramref name="offset"/> the guest may write.</summary>
    public void SetWritableMask(int offset, int length, uint mask)
    {
        for (int i = 0; i < length; i++)
        {
            _writable[offset + i] = (byte)(mask >> (8 * i));
        }
    }

    /// <summary>Which bits of the register the guest clears by writing 1 (they must not also be writable).</summary>
    public void SetWriteOneToClearMask(int offset, int length, uint mask)
    {
        for (int i = 0; i < length; i++)
        {
            _writeOneToClear[offset + i] = (byte)(mask >> (8 * i));
        }
    }
}
