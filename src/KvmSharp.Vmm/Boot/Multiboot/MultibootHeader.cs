using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// The multiboot (version 1) header of a kernel: the magic 0x1BADB002 at a 4-byte aligned offset in
/// the first 8 KiB of the file, the flags, a checksum that makes the three add up to zero, and with
/// flag 16 the a.out-kludge addresses that say where the file's bytes load.
/// </summary>
public sealed record MultibootHeader(int FileOffset, uint Flags, uint HeaderAddress, uint LoadAddress, uint LoadEndAddress, uint BssEndAddress, uint EntryAddress)
{
    public const uint Magic = 0x1BADB002;

    /// <summary>What the boot loader leaves in eax for the kernel.</summary>
    public const uint BootloaderMagic = 0x2BADB002;

    /// <summary>The header lies in the first 8 KiB of the file.</summary>
    public const int SearchLimit = 8192;

    /// <summary>Flag 0: modules page aligned; flag 1: memory information; flag 2: a video mode (not provided; QEMU ignores it too).</summary>
    public const uint FlagPageAlignModules = 1u << 0, FlagMemoryInfo = 1u << 1, FlagVideoMode = 1u << 2;

    /// <summary>Flag 16: the load addresses are in the header (the "a.out kludge"), not in ELF program headers.</summary>
    public const uint FlagAddressFields = 1u << 16;

    // Bits 0-15 are requirements a boot loader must refuse when it does not understand them.
    private const uint RequiredMask = 0xFFFF, Understood = FlagPageAlignModules | FlagMemoryInfo | FlagVideoMode;
    private const int BasicSize = 12, AddressFieldsSize = 32;

    public bool HasAddressFields => (Flags & FlagAddressFields) != 0;

    /// <summary>The file offset of the first magic within the first 8 KiB, or null when there is none.</summary>
    public static int? FindMagic(ReadOnlySpan<byte> file)
    {
        int limit = Math.Min(file.Length, SearchLimit);
        for (int at = 0; at + 4 <= limit; at += 4)
            if (BinaryPrimitives.ReadUInt32LittleEndian(file[at..]) == Magic) return at;
        return null;
    }

    /// <summary>
    /// The first header whose checksum holds; null when the magic does not occur. A magic whose
    /// checksum is wrong (and no later valid one), unknown required flags or a header cut short
    /// by the end of the file are an <see cref="InvalidDataException"/> naming the offset and values.
    /// </summary>
    public static MultibootHeader? Find(ReadOnlySpan<byte> file, string name)
    {
        int? first = FindMagic(file);
        if (first is null) return null;
        int limit = Math.Min(file.Length, SearchLimit);
        string? firstProblem = null;
        for (int at = first.Value; at + 4 <= limit; at += 4)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(file[at..]) != Magic) continue;
            if (file.Length - at < BasicSize)
            {
                firstProblem ??= $"'{name}': the multiboot header at file offset 0x{at:x} is cut short by the end of the file ({file.Length} bytes; the header needs {BasicSize})";
                continue;
            }
            uint flags = BinaryPrimitives.ReadUInt32LittleEndian(file[(at + 4)..]);
            uint checksum = BinaryPrimitives.ReadUInt32LittleEndian(file[(at + 8)..]);
            uint sum = unchecked(Magic + flags + checksum);
            if (sum != 0)
            {
                firstProblem ??= $"'{name}': the multiboot header at file offset 0x{at:x} has checksum 0x{checksum:x8}, but magic + flags (0x{flags:x8}) + checksum must be 0 (it is 0x{sum:x8}); the checksum should be 0x{unchecked(0u - Magic - flags):x8}";
                continue;
            }
            return Parse(file, name, at, flags);
        }
        throw new InvalidDataException(firstProblem!);
    }

    private static MultibootHeader Parse(ReadOnlySpan<byte> file, string name, int at, uint flags)
    {
        uint unknown = flags & RequiredMask & ~Understood;
        if (unknown != 0)
            throw new InvalidDataException($"'{name}': the multiboot header at file offset 0x{at:x} has flags 0x{flags:x8}, which require features KvmSharp does not provide (bits 0x{unknown:x4}); it provides bits 0 (page-aligned modules), 1 (memory information) and accepts 2 (video mode, left unset)");
        if ((flags & FlagAddressFields) == 0) return new MultibootHeader(at, flags, 0, 0, 0, 0, 0);
        if (file.Length - at < AddressFieldsSize)
            throw new InvalidDataException($"'{name}': the multiboot header at file offset 0x{at:x} sets flag 16 (load addresses in the header) but the file ends {file.Length - at} bytes after it; the address fields need {AddressFieldsSize}");
        var fields = file[at..];
        return new MultibootHeader(at, flags,
            HeaderAddress: BinaryPrimitives.ReadUInt32LittleEndian(fields[12..]),
            LoadAddress: BinaryPrimitives.ReadUInt32LittleEndian(fields[16..]),
            LoadEndAddress: BinaryPrimitives.ReadUInt32LittleEndian(fields[20..]),
            BssEndAddress: BinaryPrimitives.ReadUInt32LittleEndian(fields[24..]),
            EntryAddress: BinaryPrimitives.ReadUInt32LittleEndian(fields[28..]));
    }
}
