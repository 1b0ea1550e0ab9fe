using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// A multiboot (version 1) kernel: where its bytes load and where it is entered. With flag 16 the
/// header's a.out-kludge addresses say it; otherwise the file is a 32-bit ELF whose PT_LOAD segments
/// load at their physical addresses (p_paddr) and whose entry is e_entry (translated to a physical
/// address when it lies in a segment linked elsewhere, as GRUB does). The file is untrusted: every
/// offset and size is checked against the file before use, in arithmetic that cannot wrap, and
/// anything malformed is an <see cref="InvalidDataException"/> naming the field and the numbers.
/// </summary>
public sealed class MultibootKernel
{
    private const ushort MachineI386 = 3;
    private const uint PtLoad = 1;
    private const int Elf32HeaderSize = 52, Elf32ProgramHeaderSize = 32;

    /// <summary>A multiboot kernel is entered in 32-bit protected mode: everything lies below 4 GiB.</summary>
    public const ulong LoadLimit = 1UL << 32;

    private MultibootKernel(string name, MultibootHeader header, uint entry, IReadOnlyList<MultibootSegment> segments)
    {
        Name = name;
        Header = header;
        Entry = entry;
        Segments = segments;
        End = segments.Max(s => s.End);
    }

    public string Name { get; }
    public MultibootHeader Header { get; }

    /// <summary>The 32-bit physical entry point.</summary>
    public uint Entry { get; }

    public IReadOnlyList<MultibootSegment> Segments { get; }

    /// <summary>The end of the highest segment, bss included.</summary>
    public ulong End { get; }

    /// <summary>Parse and check a kernel that has a multiboot header; <see cref="InvalidDataException"/> says what is wrong.</summary>
    public static MultibootKernel Parse(byte[] file, string name)
    {
        var header = MultibootHeader.Find(file, name)
            ?? throw new InvalidDataException($"'{name}' has no multiboot header (magic 0x{MultibootHeader.Magic:x8} in its first {MultibootHeader.SearchLimit} bytes)");
        return header.HasAddressFields ? FromAddressFields(file, name, header) : FromElf(file, name, header);
    }

    // The a.out kludge: the file bytes from (header offset - (header_addr - load_addr)) load at
    // load_addr, up to load_end_addr (0: the end of the file), then zeros up to bss_end_addr (0: none).
    private static MultibootKernel FromAddressFields(byte[] file, string name, MultibootHeader h)
    {
        string where = $"'{name}': multiboot header at file offset 0x{h.FileOffset:x}";
        if (h.LoadAddress > h.HeaderAddress)
            throw new InvalidDataException($"{where}: load_addr 0x{h.LoadAddress:x} is above header_addr 0x{h.HeaderAddress:x}; the header must lie in the loaded bytes");
        ulong headerToLoad = h.HeaderAddress - h.LoadAddress;
        if (headerToLoad > (ulong)h.FileOffset)
            throw new InvalidDataException($"{where}: header_addr 0x{h.HeaderAddress:x} - load_addr 0x{h.LoadAddress:x} = 0x{headerToLoad:x} puts the start of the load before the start of the file");
        ulong fileStart = (ulong)h.FileOffset - headerToLoad;
        ulong loadSize;
        if (h.LoadEndAddress == 0) loadSize = (ulong)file.Length - fileStart;
        else
        {
            if (h.LoadEndAddress <= h.LoadAddress)
                throw new InvalidDataException($"{where}: load_end_addr 0x{h.LoadEndAddress:x} is not above load_addr 0x{h.LoadAddress:x}");
            loadSize = h.LoadEndAddress - h.LoadAddress;
            if (loadSize > (ulong)file.Length - fileStart)
                throw new InvalidDataException($"{where}: load_addr 0x{h.LoadAddress:x}-load_end_addr 0x{h.LoadEndAddress:x} is 0x{loadSize:x} bytes from file offset 0x{fileStart:x}, beyond the end of the file (0x{file.Length:x} bytes)");
        }
        ulong memorySize = loadSize;
        if (h.BssEndAddress != 0)
        {
            ulong loadEnd = h.LoadAddress + loadSize;
            if (h.BssEndAddress < loadEnd)
                throw new InvalidDataException($"{where}: bss_end_addr 0x{h.BssEndAddress:x} is below the end of the loaded bytes 0x{loadEnd:x}");
            memorySize = h.BssEndAddress - h.LoadAddress;
        }
        if ((ulong)h.LoadAddress + memorySize > LoadLimit)
            throw new InvalidDataException($"{where}: 0x{memorySize:x} bytes at load_addr 0x{h.LoadAddress:x} run past 4 GiB");
        var segment = new MultibootSegment(h.LoadAddress, file.AsSpan((int)fileStart, (int)loadSize).ToArray(), memorySize, "the a.out-kludge load range");
        if (!segment.HoldsCode(h.EntryAddress))
            throw new InvalidDataException($"{where}: entry_addr 0x{h.EntryAddress:x} is not inside the loaded bytes 0x{h.LoadAddress:x}-0x{h.LoadAddress + loadSize:x}");
        return new MultibootKernel(name, h, h.EntryAddress, [segment]);
    }

    private static MultibootKernel FromElf(byte[] file, string name, MultibootHeader header)
    {
        var span = file.AsSpan();
        if (!(file.Length >= 4 && file[0] == 0x7F && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F'))
            throw new InvalidDataException($"'{name}' has a multiboot header without flag 16 (load addresses), so it must be an ELF file, and it is not (no \\x7fELF magic)");
        if (file.Length < Elf32HeaderSize)
            throw new InvalidDataException($"'{name}' is an ELF file of {file.Length} bytes, too short for the {Elf32HeaderSize}-byte ELF32 header");
        if (file[4] == 2)
            throw new InvalidDataException($"'{name}' is a 64-bit ELF file; a multiboot kernel is a 32-bit ELF (or sets flag 16 with its load addresses in the multiboot header)");
        if (file[4] != 1 || file[5] != 1) throw new InvalidDataException($"'{name}' is not a 32-bit little-endian ELF file (EI_CLASS {file[4]}, EI_DATA {file[5]})");
        ushort machine = BinaryPrimitives.ReadUInt16LittleEndian(span[18..]);
        if (machine != MachineI386) throw new InvalidDataException($"'{name}' is not an i386 ELF file (e_machine {machine}; a multiboot kernel has 3)");
        uint elfEntry = BinaryPrimitives.ReadUInt32LittleEndian(span[24..]);
        ulong tableOffset = BinaryPrimitives.ReadUInt32LittleEndian(span[28..]);
        ushort entrySize = BinaryPrimitives.ReadUInt16LittleEndian(span[42..]);
        ushort count = BinaryPrimitives.ReadUInt16LittleEndian(span[44..]);
        ulong fileLength = (ulong)file.Length;
        if (count == 0) throw new InvalidDataException($"'{name}' has no program headers (e_phnum 0)");
        if (entrySize < Elf32ProgramHeaderSize)
            throw new InvalidDataException($"'{name}' has program headers of {entrySize} bytes (e_phentsize); ELF32 needs at least {Elf32ProgramHeaderSize}");
        ulong tableSize = (ulong)entrySize * count; // at most 0xFFFF * 0xFFFF: no overflow
        if (tableOffset > fileLength || tableSize > fileLength - tableOffset)
            throw new InvalidDataException($"'{name}': the ELF program header table at offset 0x{tableOffset:x} ({count} x {entrySize} bytes) lies beyond the file (0x{fileLength:x} bytes)");

        var segments = new List<MultibootSegment>();
        ulong? physicalEntry = null;
        for (int i = 0; i < count; i++)
        {
            var ph = span.Slice((int)(tableOffset + (ulong)i * entrySize), Elf32ProgramHeaderSize);
            if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != PtLoad) continue;
            ulong offset = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
            ulong virtualAddress = BinaryPrimitives.ReadUInt32LittleEndian(ph[8..]);
            ulong physical = BinaryPrimitives.ReadUInt32LittleEndian(ph[12..]);
            ulong fileSize = BinaryPrimitives.ReadUInt32LittleEndian(ph[16..]);
            ulong memorySize = BinaryPrimitives.ReadUInt32LittleEndian(ph[20..]);
            if (memorySize == 0) continue;
            if (offset > fileLength || fileSize > fileLength - offset)
                throw new InvalidDataException($"'{name}': ELF program header {i}: segment offset 0x{offset:x} + size 0x{fileSize:x} lies beyond the file (0x{fileLength:x} bytes)");
            if (memorySize < fileSize)
                throw new InvalidDataException($"'{name}': ELF program header {i}: memory size 0x{memorySize:x} is smaller than the file size 0x{fileSize:x}");
            if (physical + memorySize > LoadLimit)
                throw new InvalidDataException($"'{name}': ELF program header {i}: segment at 0x{physical:x} of 0x{memorySize:x} bytes runs past 4 GiB");
            var segment = new MultibootSegment(physical, span.Slice((int)offset, (int)fileSize).ToArray(), memorySize, $"ELF program header {i}");
            segments.Add(segment);
            // e_entry is a virtual address: in a segment linked at another address it moves with the segment.
            if (physicalEntry is null && elfEntry >= virtualAddress && elfEntry - virtualAddress < fileSize)
                physicalEntry = physical + (elfEntry - virtualAddress);
        }
        if (segments.Count == 0) throw new InvalidDataException($"'{name}' has no loadable segment (PT_LOAD with p_memsz > 0)");
        uint entry = (uint)(physicalEntry ?? elfEntry);
        if (!segments.Exists(s => s.HoldsCode(entry)))
            throw new InvalidDataException($"'{name}': the ELF entry point 0x{elfEntry:x} is not inside the file bytes of any loadable segment");
        return new MultibootKernel(name, header, entry, segments);
    }
}
