using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// An uncompressed ELF vmlinux with a PVH entry point (the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY,
/// which Linux has with CONFIG_PVH): its PT_LOAD segments are placed at their physical addresses
/// and the boot vCPU enters in 32-bit protected mode with ebx = the hvm_start_info.
/// </summary>
public sealed class PvhKernel
{
    private const ushort MachineX86_64 = 62;
    private const uint PtLoad = 1, PtNote = 4, XenElfNotePhys32Entry = 18;

    private PvhKernel(string name, uint entry, IReadOnlyList<(ulong PhysicalAddress, byte[] Bytes, ulong MemorySize)> segments)
    {
        Name = name;
        Entry = entry;
        Segments = segments;
    }

    public string Name { get; }

    /// <summary>The 32-bit physical entry point from the PVH note.</summary>
    public uint Entry { get; }

    public IReadOnlyList<(ulong PhysicalAddress, byte[] Bytes, ulong MemorySize)> Segments { get; }

    public ulong End => Segments.Max(s => s.PhysicalAddress + s.MemorySize);

    public static bool IsElf(ReadOnlySpan<byte> file) => file.Length >= 4 && file[0] == 0x7F && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F';

    /// <summary>Parse and check a vmlinux; <see cref="InvalidDataException"/> says what is wrong.</summary>
    public static PvhKernel Parse(byte[] file, string name)
    {
        if (!IsElf(file) || file.Length < 64) throw new InvalidDataException($"'{name}' is not an ELF file");
        if (file[4] != 2 || file[5] != 1) throw new InvalidDataException($"'{name}' is not a 64-bit little-endian ELF file");
        var span = file.AsSpan();
        if (BinaryPrimitives.ReadUInt16LittleEndian(span[18..]) != MachineX86_64) throw new InvalidDataException($"'{name}' is not an x86-64 ELF file");
        ulong headerOffset = BinaryPrimitives.ReadUInt64LittleEndian(span[32..]);
        int headerSize = BinaryPrimitives.ReadUInt16LittleEndian(span[54..]);
        int headerCount = BinaryPrimitives.ReadUInt16LittleEndian(span[56..]);
        if (headerSize < 56 || headerOffset + (ulong)(headerSize * headerCount) > (ulong)file.Length)
            throw new InvalidDataException($"'{name}' has a truncated program header table");

        uint? entry = null;
        var segments = new List<(ulong, byte[], ulong)>();
        for (int i = 0; i < headerCount; i++)
        {
            var header = span[(int)(headerOffset + (ulong)(i * headerSize))..];
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
            ulong physical = BinaryPrimitives.ReadUInt64LittleEndian(header[24..]);
            ulong fileSize = BinaryPrimitives.ReadUInt64LittleEndian(header[32..]);
            ulong memorySize = BinaryPrimitives.ReadUInt64LittleEndian(header[40..]);
            if (offset + fileSize > (ulong)file.Length) throw new InvalidDataException($"'{name}': segment {i} runs past the end of the file");
            if (type == PtLoad && memorySize > 0) segments.Add((physical, file[(int)offset..(int)(offset + fileSize)], memorySize));
            if (type == PtNote) entry ??= FindPvhEntry(span.Slice((int)offset, (int)fileSize));
        }
        if (entry is null)
            throw new InvalidDataException($"'{name}' has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y, or give the bzImage");
        if (segments.Count == 0) throw new InvalidDataException($"'{name}' has no loadable segment");
        return new PvhKernel(name, entry.Value, segments);
    }

    private static uint? FindPvhEntry(ReadOnlySpan<byte> notes)
    {
        while (notes.Length >= 12)
        {
            int nameSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(notes);
            int descSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(notes[4..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[8..]);
            int nameEnd = 12 + ((nameSize + 3) & ~3);
            int descEnd = nameEnd + ((descSize + 3) & ~3);
            if (descEnd > notes.Length) return null;
            bool xen = nameSize >= 3 && notes[12] == (byte)'X' && notes[13] == (byte)'e' && notes[14] == (byte)'n';
            if (xen && type == XenElfNotePhys32Entry && descSize >= 4)
                return BinaryPrimitives.ReadUInt32LittleEndian(notes[nameEnd..]);
            notes = notes[descEnd..];
        }
        return null;
    }
}
