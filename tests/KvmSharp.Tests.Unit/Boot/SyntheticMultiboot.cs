using System.Buffers.Binary;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// Minimal multiboot kernels: a 32-bit ELF (header, two PT_LOAD program headers, the multiboot header at
/// <see cref="HeaderOffset"/>, the segments) and a flat file with the a.out-kludge address fields (flag 16).
/// </summary>
internal static class SyntheticMultiboot
{
    public const int FirstProgramHeader = 52, SecondProgramHeader = 52 + 32, HeaderOffset = 0x100, CodeOffset = 0x200, DataOffset = 0x300;
    public const uint Magic = 0x1BADB002;
    public const uint CodeAddress = 0x100000, DataAddress = 0x200000, Entry = 0x100010;

    /// <param name="linkedAt">The virtual address the code segment is linked at (e_entry is virtual; the loader translates it).</param>
    public static byte[] Elf(uint flags = 0x3, uint checksumError = 0, uint linkedAt = CodeAddress)
    {
        var file = new byte[0x400];
        var span = file.AsSpan();
        "\u007fELF"u8.CopyTo(span);
        file[4] = 1; file[5] = 1; file[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(span[16..], 2);
        BinaryPrimitives.WriteUInt16LittleEndian(span[18..], 3);
        BinaryPrimitives.WriteUInt32LittleEndian(span[24..], linkedAt + (Entry - CodeAddress));
        BinaryPrimitives.WriteUInt32LittleEndian(span[28..], FirstProgramHeader);
        BinaryPrimitives.WriteUInt16LittleEndian(span[42..], 32);
        BinaryPrimitives.WriteUInt16LittleEndian(span[44..], 2);
        ProgramHeader(span[FirstProgramHeader..], CodeOffset, linkedAt, CodeAddress, 0x100, 0x100);
        ProgramHeader(span[SecondProgramHeader..], DataOffset, DataAddress, DataAddress, 0x100, 0x3000);
        for (int i = 0; i < 0x200; i++) file[CodeOffset + i] = (byte)(i + 1);
        Header(span[HeaderOffset..], flags, checksumError);
        return file;
    }

    /// <summary>A flat kernel: the header at offset 0x40 of a 0x400-byte file loaded at 0x100000, bss to 0x104000, entry at 0x100080.</summary>
    public static byte[] AddressFields(uint loadEndAddress = 0x100400, uint bssEndAddress = 0x104000, uint entry = 0x100080)
    {
        var file = new byte[0x400];
        for (int i = 0; i < file.Length; i++) file[i] = (byte)(0x80 + i);
        var header = file.AsSpan(0x40);
        Header(header, 0x10003, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(header[12..], 0x100040);
        BinaryPrimitives.WriteUInt32LittleEndian(header[16..], 0x100000);
        BinaryPrimitives.WriteUInt32LittleEndian(header[20..], loadEndAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(header[24..], bssEndAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(header[28..], entry);
        return file;
    }

    private static void ProgramHeader(Span<byte> ph, uint offset, uint virtualAddress, uint physical, uint fileSize, uint memorySize)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(ph, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[4..], offset);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[8..], virtualAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[12..], physical);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[16..], fileSize);
        BinaryPrimitives.WriteUInt32LittleEndian(ph[20..], memorySize);
    }

    private static void Header(Span<byte> header, uint flags, uint checksumError)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(header[4..], flags);
        BinaryPrimitives.WriteUInt32LittleEndian(header[8..], unchecked(0u - Magic - flags + checksumError));
    }
}
