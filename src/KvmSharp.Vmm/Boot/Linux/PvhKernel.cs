using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// An uncompressed ELF vmlinux with a PVH entry point (the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY,
/// which Linux has with CONFIG_PVH): its PT_LOAD segments are placed at their physical addresses
/// and the boot vCPU enters in 32-bit protected mode with ebx = the hvm_start_info.
/// The file is untrusted: every offset and size is checked against the file before use, with
/// arithmetic that cannot wrap, and every loop advances; anything malformed is an
/// <see cref="InvalidDataException"/> naming the header and the numbers.
/// </summary>
public sealed class PvhKernel
{
    private const ushort MachineX86_64 = 62;
    private const uint PtLoad = 1, PtNote = 4, XenElfNotePhys32Entry = 18;
    private const int ElfHeaderSize = 64, ProgramHeaderSize = 56, NoteHeaderSize = 12;

    /// <summary>Segments load at or above 1 MiB: below it KvmSharp keeps the start info, command line and tables.</summary>
    public const ulong LowestLoadAddress = LinuxBootLayout.KernelLoad;

    /// <summary>The PVH entry runs in 32-bit protected mode, so the kernel must lie below 4 GiB.</summary>
    public const ulong LoadLimit = 1UL << 32;

    private PvhKernel(string name, uint entry, IReadOnlyList<(ulong PhysicalAddress, byte[] Bytes, ulong MemorySize)> segments)
    {
        Name = name;
        Entry = entry;
        Segments = segments;
        End = segments.Max(s => s.PhysicalAddress + s.MemorySize);
    }

    public string Name { get; }

    /// <summary>The 32-bit physical entry point from the PVH note.</summary>
    public uint Entry { get; }

    public IReadOnlyList<(ulong PhysicalAddress, byte[] Bytes, ulong MemorySize)> Segments { get; }

    /// <summary>The end of the highest segment (below <see cref="LoadLimit"/>).</summary>
    public ulong End { get; }

    public static bool IsElf(ReadOnlySpan<byte> file) => file.Length >= 4 && file[0] == 0x7F && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F';

    /// <summary>Parse and check a vmlinux; <see cref="InvalidDataException"/> says what is wrong.</summary>
    public static PvhKernel Parse(byte[] file, string name)
    {
        if (!IsElf(file)) throw new InvalidDataException($"'{name}' is not an ELF file (no \\x7fELF magic)");
        if (file.Length < ElfHeaderSize)
            throw new InvalidDataException($"'{name}' is an ELF file of {file.Length} bytes, too short for the {ElfHeaderSize}-byte ELF64 header");
        if (file[4] != 2 || file[5] != 1) throw new InvalidDataException($"'{name}' is not a 64-bit little-endian ELF file");
        var span = file.AsSpan();
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(span[18..]);
        if (machine != MachineX86_64) throw new InvalidDataException($"'{name}' is not an x86-64 ELF file (e_machine {machine})");
        ulong tableOffset = BinaryPrimitives.ReadUInt64LittleEndian(span[32..]);
        ushort entrySize = BinaryPrimitives.ReadUInt16LittleEndian(span[54..]);
        ushort count = BinaryPrimitives.ReadUInt16LittleEndian(span[56..]);
        ulong fileLength = (ulong)file.Length;
        if (count == 0) throw new InvalidDataException($"'{name}' has no program headers (e_phnum 0)");
        if (entrySize < ProgramHeaderSize)
            throw new InvalidDataException($"'{name}' has program headers of {entrySize} bytes (e_phentsize); ELF64 needs at least {ProgramHeaderSize}");
        ulong tableSize = (ulong)entrySize * count; // at most 0xFFFF * 0xFFFF: no overflow
        if (tableOffset > fileLength || tableSize > fileLength - tableOffset)
            throw new InvalidDataException($"'{name}': the ELF program header table at offset 0x{tableOffset:x} ({count} x {entrySize} bytes) lies beyond the file (0x{fileLength:x} bytes)");

        uint? entry = null;
        var segments = new List<(ulong, byte[], ulong)>();
        for (int i = 0; i < count; i++)
        {
            var header = span.Slice((int)(tableOffset + (ulong)i * entrySize), ProgramHeaderSize);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(header);
            if (type != PtLoad && type != PtNote) continue;
            ulong offset = BinaryPrimitives.ReadUInt64LittleEndian(header[8..]);
            ulong physical = BinaryPrimitives.ReadUInt64LittleEndian(header[24..]);
            ulong fileSize = BinaryPrimitives.ReadUInt64LittleEndian(header[32..]);
            ulong memorySize = BinaryPrimitives.ReadUInt64LittleEndian(header[40..]);
            ulong alignment = BinaryPrimitives.ReadUInt64LittleEndian(header[48..]);
            if (offset > fileLength || fileSize > fileLength - offset)
                throw new InvalidDataException($"'{name}': ELF program header {i}: segment offset 0x{offset:x} + size 0x{fileSize:x} lies beyond the file (0x{fileLength:x} bytes)");
            var bytes = span.Slice((int)offset, (int)fileSize);
            if (type == PtNote)
            {
                uint? found = FindPvhEntry(bytes, alignment == 8 ? 8 : 4, name, i, offset);
                entry ??= found;
                continue;
            }
            if (memorySize == 0) continue;
            if (memorySize < fileSize)
                throw new InvalidDataException($"'{name}': ELF program header {i}: memory size 0x{memorySize:x} is smaller than the file size 0x{fileSize:x}");
            if (physical < LowestLoadAddress || physical > LoadLimit || memorySize > LoadLimit - physical)
                throw new InvalidDataException($"'{name}': ELF program header {i}: segment at 0x{physical:x} of 0x{memorySize:x} bytes lies outside 0x{LowestLoadAddress:x}-0x{LoadLimit:x}, where a PVH kernel must load");
            segments.Add((physical, bytes.ToArray(), memorySize));
        }
        if (entry is null)
            throw new InvalidDataException($"'{name}' has no PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y, or give the bzImage");
        if (segments.Count == 0) throw new InvalidDataException($"'{name}' has no loadable segment");
        uint pvhEntry = entry.Value;
        if (!segments.Exists(s => pvhEntry >= s.Item1 && pvhEntry - s.Item1 < (ulong)s.Item2.Length))
            throw new InvalidDataException($"'{name}': the PVH entry point 0x{pvhEntry:x} is not inside the file bytes of any loadable segment");
        return new PvhKernel(name, pvhEntry, segments);
    }

    // Notes are (namesz, descsz, type, name, desc), name and desc each padded to the segment's
    // alignment. Sizes are 32-bit and untrusted: computed in 64 bits, checked against what is
    // left, and each note advances by at least its 12-byte header.
    private static uint? FindPvhEntry(ReadOnlySpan<byte> notes, int alignment, string name, int header, ulong segmentOffset)
    {
        uint? entry = null;
        int at = 0;
        while (notes.Length - at >= NoteHeaderSize)
        {
            uint nameSize = BinaryPrimitives.ReadUInt32LittleEndian(notes[at..]);
            uint descSize = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 4)..]);
            uint type = BinaryPrimitives.ReadUInt32LittleEndian(notes[(at + 8)..]);
            ulong nameEnd = NoteHeaderSize + Align(nameSize, alignment);
            ulong noteEnd = nameEnd + Align(descSize, alignment);
            if (noteEnd > (ulong)(notes.Length - at))
                throw new InvalidDataException($"'{name}': ELF program header {header}: the note at file offset 0x{segmentOffset + (ulong)at:x} (name size 0x{nameSize:x}, descriptor size 0x{descSize:x}) runs past the end of its PT_NOTE segment (0x{notes.Length:x} bytes)");
            var noteName = notes.Slice(at + NoteHeaderSize, (int)nameSize);
            var descriptor = notes.Slice(at + (int)nameEnd, (int)descSize);
            if (entry is null && type == XenElfNotePhys32Entry && noteName.SequenceEqual("Xen\0"u8))
                entry = ReadEntry(descriptor, name);
            at += (int)noteEnd;
        }
        return entry;
    }

    // Linux writes the entry as a pointer-sized value (8 bytes on x86-64); 4 bytes is also accepted.
    private static uint ReadEntry(ReadOnlySpan<byte> descriptor, string name)
    {
        ulong value = descriptor.Length switch
        {
            4 => BinaryPrimitives.ReadUInt32LittleEndian(descriptor),
            8 => BinaryPrimitives.ReadUInt64LittleEndian(descriptor),
            _ => throw new InvalidDataException($"'{name}': the PVH entry note has a {descriptor.Length}-byte descriptor; expected 4 or 8"),
        };
        if (value >= LoadLimit) throw new InvalidDataException($"'{name}': the PVH entry point 0x{value:x} is above 4 GiB; it must be a 32-bit physical address");
        return (uint)value;
    }

    private static ulong Align(uint size, int alignment) => ((ulong)size + (ulong)alignment - 1) & ~((ulong)alignment - 1);
}
