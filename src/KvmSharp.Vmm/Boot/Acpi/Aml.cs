using System.Buffers.Binary;
using System.Text;

namespace KvmSharp.Vmm.Boot.Acpi;

/// <summary>
/// The few AML encodings the DSDT needs (ACPI 6.x, chapter 20 "ACPI Machine Language Specification"
/// and 6.4 "Resource Data Types"): named objects, scopes, devices, integers, EISA ids and the
/// resource descriptors of a root bridge's _CRS.
/// </summary>
public static class Aml
{
    private const byte NameOp = 0x08, ScopeOp = 0x10, BufferOp = 0x11, PackageOp = 0x12;
    private const byte ExtOpPrefix = 0x5B, DeviceOp = 0x82, RootChar = 0x5C;
    private const byte ZeroOp = 0x00, OneOp = 0x01, BytePrefix = 0x0A, WordPrefix = 0x0B, DWordPrefix = 0x0C, QWordPrefix = 0x0E;

    /// <summary>Name(name, value).</summary>
    public static byte[] Name(string name, byte[] value) => [NameOp, .. NameString(name), .. value];

    /// <summary>Scope(name) { body }.</summary>
    public static byte[] Scope(string name, params byte[][] body) => [ScopeOp, .. WithPackageLength([.. NameString(name), .. body.SelectMany(b => b)])];

    /// <summary>Device(name) { body }.</summary>
    public static byte[] Device(string name, params byte[][] body) => [ExtOpPrefix, DeviceOp, .. WithPackageLength([.. NameString(name), .. body.SelectMany(b => b)])];

    /// <summary>Package() { integers } (small packages of byte constants, such as \_S5).</summary>
    public static byte[] Package(params byte[][] elements) => [PackageOp, .. WithPackageLength([(byte)elements.Length, .. elements.SelectMany(e => e)])];

    /// <summary>Buffer() { bytes }.</summary>
    public static byte[] Buffer(byte[] bytes) => [BufferOp, .. WithPackageLength([.. Integer((ulong)bytes.Length), .. bytes])];

    /// <summary>The shortest integer encoding of <paramref name="value"/>.</summary>
    public static byte[] Integer(ulong value) => value switch
    {
        0 => [ZeroOp],
        1 => [OneOp],
        <= byte.MaxValue => [BytePrefix, (byte)value],
        <= ushort.MaxValue => [WordPrefix, (byte)value, (byte)(value >> 8)],
        <= uint.MaxValue => [DWordPrefix, .. LittleEndian((uint)value)],
        _ => [QWordPrefix, .. LittleEndian(value)],
    };

    /// <summary>EisaId("PNP0A08"): three letters compressed to 5 bits each, then four hex digits, as a DWord constant.</summary>
    public static byte[] EisaId(string id)
    {
        if (id.Length != 7 || !id[..3].All(c => c is >= 'A' and <= 'Z')) throw new ArgumentException($"'{id}' is not an EISA id (three capitals, four hex digits)", nameof(id));
        ushort vendor = (ushort)(((id[0] - 0x40) << 10) | ((id[1] - 0x40) << 5) | (id[2] - 0x40));
        ushort product = Convert.ToUInt16(id[3..], 16);
        return [DWordPrefix, (byte)(vendor >> 8), (byte)vendor, (byte)(product >> 8), (byte)product];
    }

    /// <summary>
    /// A NameString: "\_SB_" (root-relative) or a single 4-character segment; shorter segments are
    /// padded with '_' as ASL does.
    /// </summary>
    public static byte[] NameString(string name)
    {
        bool root = name.StartsWith('\\');
        string segment = root ? name[1..] : name;
        if (segment.Length is 0 or > 4 || segment.Contains('.')) throw new ArgumentException($"'{name}' is not a single AML name segment", nameof(name));
        byte[] bytes = Encoding.ASCII.GetBytes(segment.PadRight(4, '_'));
        return root ? [RootChar, .. bytes] : bytes;
    }

    /// <summary>PkgLength (which counts its own bytes) followed by <paramref name="body"/>.</summary>
    public static byte[] WithPackageLength(byte[] body)
    {
        for (int extra = 0; extra <= 3; extra++)
        {
            int total = body.Length + 1 + extra;
            if (extra == 0 && total < 0x40) return [(byte)total, .. body];
            if (extra > 0 && total < 1 << (4 + 8 * extra))
            {
                var length = new byte[1 + extra];
                length[0] = (byte)((extra << 6) | (total & 0x0F));
                for (int i = 1; i <= extra; i++) length[i] = (byte)(total >> (4 + 8 * (i - 1)));
                return [.. length, .. body];
            }
        }
        throw new ArgumentException($"{body.Length} bytes do not fit an AML package", nameof(body));
    }

    // ---- resource descriptors (ACPI 6.4) ----

    private const byte ResourceProducerFixed = 0x0C; // producer, positive decode, MinFixed, MaxFixed

    /// <summary>WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, first, last, 0, count).</summary>
    public static byte[] WordBusNumber(ushort first, ushort last) => WordAddress(2, 0, first, last);

    /// <summary>WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, length).</summary>
    public static byte[] WordIo(ushort minimum, ushort maximum) => WordAddress(1, 0x03, minimum, maximum);

    private static byte[] WordAddress(byte resourceType, byte typeFlags, ushort minimum, ushort maximum)
    {
        var d = new byte[16];
        d[0] = 0x88;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(1), 13);
        d[3] = resourceType;
        d[4] = ResourceProducerFixed;
        d[5] = typeFlags;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(8), minimum);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(10), maximum);
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(14), (ushort)(maximum - minimum + 1));
        return d;
    }

    /// <summary>IO(Decode16, port, port, 1, length): ports the bridge itself decodes (0xCF8-0xCFF).</summary>
    public static byte[] Io(ushort port, byte length) => [0x47, 0x01, (byte)port, (byte)(port >> 8), (byte)port, (byte)(port >> 8), 1, length];

    /// <summary>DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length).</summary>
    public static byte[] DWordMemory(uint minimum, uint maximum)
    {
        var d = new byte[26];
        d[0] = 0x87;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(1), 23);
        d[3] = 0;
        d[4] = ResourceProducerFixed;
        d[5] = 0x01;
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(10), minimum);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(14), maximum);
        BinaryPrimitives.WriteUInt32LittleEndian(d.AsSpan(22), maximum - minimum + 1);
        return d;
    }

    /// <summary>QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, NonCacheable, ReadWrite, 0, min, max, 0, length).</summary>
    public static byte[] QWordMemory(ulong minimum, ulong maximum)
    {
        var d = new byte[46];
        d[0] = 0x8A;
        BinaryPrimitives.WriteUInt16LittleEndian(d.AsSpan(1), 43);
        d[3] = 0;
        d[4] = ResourceProducerFixed;
        d[5] = 0x01;
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(14), minimum);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(22), maximum);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(38), maximum - minimum + 1);
        return d;
    }

    /// <summary>A ResourceTemplate: the descriptors, then the End Tag (checksum 0: "treated as if the checksum is valid").</summary>
    public static byte[] ResourceTemplate(params byte[][] descriptors) => Buffer([.. descriptors.SelectMany(d => d), 0x79, 0x00]);

    private static byte[] LittleEndian(uint value)
    {
        var bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] LittleEndian(ulong value)
    {
        var bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }
}
