using System.Buffers.Binary;

namespace KvmSharp.Tests.Integration.Multiboot;

/// <summary>
/// Writes a multiboot kernel as a 32-bit i386 ELF: the ELF header, one PT_LOAD program header per
/// segment, the multiboot header at file offset <see cref="HeaderOffset"/> (flags 0x3: page-aligned
/// modules, memory information) and each segment's bytes from its own 4 KiB-aligned file offset.
/// </summary>
internal static class MultibootElf
{
    public const int HeaderOffset = 0x200;
    public const uint Magic = 0x1BADB002, DefaultFlags = 0x3;

    public sealed record Segment(uint PhysicalAddress, byte[] Bytes, uint MemorySize);

    /// <param name="checksumError">Added to the correct checksum (0: a valid header).</param>
    public static byte[] Build(uint entry, IReadOnlyList<Segment> segments, uint flags = DefaultFlags, uint checksumError = 0)
    {
        const int ElfHeaderSize = 52, ProgramHeaderSize = 32;
        var offsets = new int[segments.Count];
        int end = 0x1000;
        for (int i = 0; i < segments.Count; i++)
        {
            offsets[i] = end;
            end = (end + segments[i].Bytes.Length + 0xFFF) & ~0xFFF;
        }
        var file = new byte[end];
        var span = file.AsSpan();
        "\u007fELF"u8.CopyTo(span);
        file[4] = 1; // ELFCLASS32
        file[5] = 1; // little endian
        file[6] = 1; // EV_CURRENT
        BinaryPrimitives.WriteUInt16LittleEndian(span[16..], 2);  // ET_EXEC
        BinaryPrimitives.WriteUInt16LittleEndian(span[18..], 3);  // EM_386
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], entry);
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], ElfHeaderSize); // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(span[40..], ElfHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span[42..], ProgramHeaderSize);
        BinaryPrimitives.WriteUInt16LittleEndian(span[44..], (ushort)segments.Count);
        for (int i = 0; i < segments.Count; i++)
        {
            var ph = span[(ElfHeaderSize + i * ProgramHeaderSize)..];
            BinaryPrimitives.WriteUInt32LittleEndian(ph, 1); // PT_LOAD
            BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], (uint)offsets[i]);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[8..], segments[i].PhysicalAddress);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[12..], segments[i].PhysicalAddress);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[16..], (uint)segments[i].Bytes.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[20..], segments[i].MemorySize);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[24..], 7);
            BinaryPrimitives.WriteUInt32LittleEndian(ph[28..], 0x1000);
            segments[i].Bytes.CopyTo(span[offsets[i]..]);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(span[HeaderOffset..], Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[(HeaderOffset + 4)..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(span[(HeaderOffset + 8)..], unchecked(0u - Magic - flags + checksumError));
        return file;
    }

    /// <summary>A flat kernel with the a.out kludge (flag 16): the header at the start of the file, loaded with it at <paramref name="loadAddress"/>, entered at <paramref name="entry"/>.</summary>
    public static byte[] BuildWithAddressFields(uint loadAddress, uint entry, byte[] codeAfterHeader, uint bssBytes)
    {
        const int HeaderSize = 32;
        const uint Flags = 0x10003;
        var file = new byte[HeaderSize + codeAfterHeader.Length];
        var span = file.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(span, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], Flags);
        BinaryPrimitives.WriteUInt32LittleEndian(span[8..], unchecked(0u - Magic - Flags));
        BinaryPrimitives.WriteUInt32LittleEndian(span[12..], loadAddress);                       // header_addr
        BinaryPrimitives.WriteUInt32LittleEndian(span[16..], loadAddress);                       // load_addr
        BinaryPrimitives.WriteUInt32LittleEndian(span[20..], loadAddress + (uint)file.Length);   // load_end_addr
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], loadAddress + (uint)file.Length + bssBytes); // bss_end_addr
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], entry);
        codeAfterHeader.CopyTo(span[HeaderSize..]);
        return file;
    }
}
