using System.Buffers.Binary;
using System.Text;
using KvmSharp.Vmm.Boot.Linux;

namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// The multiboot information structure a kernel finds at ebx, with what it points to laid out after
/// it: the boot loader name, the memory map, the module list, the command line and the module strings.
/// Flags set: memory (mem_lower/mem_upper), cmdline, mods (also with none), mmap, boot_loader_name.
/// The layout's size depends only on the strings, so it can be checked before the VM exists.
/// </summary>
public static class MultibootInfo
{
    public const uint FlagMemory = 1u << 0, FlagCommandLine = 1u << 2, FlagModules = 1u << 3, FlagMemoryMap = 1u << 6, FlagBootLoaderName = 1u << 9;
    public const string BootLoaderName = "KvmSharp";

    /// <summary>Room for this many memory-map entries (KvmSharp's map has at most six).</summary>
    public const int MemoryMapCapacity = 8;

    // Offsets of the fields in the structure (multiboot.h's struct multiboot_info).
    public const int Flags = 0, MemLower = 4, MemUpper = 8, CmdLine = 16, ModsCount = 20, ModsAddr = 24, MmapLength = 44, MmapAddr = 48, BootLoaderNameAddr = 64;
    private const int StructureSize = 0x80, MemoryMapEntrySize = 24, ModuleEntrySize = 16, Alignment = 16;

    /// <summary>Bytes the structure and everything it points to take.</summary>
    public static ulong Size(string commandLine, IReadOnlyList<MultibootModule> modules) => (ulong)Layout(commandLine, modules).End;

    /// <summary>The structure at <paramref name="address"/>, with modules at <paramref name="moduleRanges"/> (same order as <paramref name="modules"/>).</summary>
    public static byte[] Build(ulong address, string commandLine, IReadOnlyList<MultibootModule> modules, IReadOnlyList<(ulong Address, ulong Size)> moduleRanges,
        uint memLowerKiB, uint memUpperKiB, IReadOnlyList<E820Entry> memoryMap)
    {
        if (moduleRanges.Count != modules.Count) throw new ArgumentException("one range per module", nameof(moduleRanges));
        if (memoryMap.Count > MemoryMapCapacity) throw new ArgumentException($"at most {MemoryMapCapacity} memory-map entries", nameof(memoryMap));
        var layout = Layout(commandLine, modules);
        var info = new byte[layout.End];
        var span = info.AsSpan();
        uint At(int offset) => checked((uint)(address + (ulong)offset));

        BinaryPrimitives.WriteUInt32LittleEndian(span[Flags..], FlagMemory | FlagCommandLine | FlagModules | FlagMemoryMap | FlagBootLoaderName);
        BinaryPrimitives.WriteUInt32LittleEndian(span[MemLower..], memLowerKiB);
        BinaryPrimitives.WriteUInt32LittleEndian(span[MemUpper..], memUpperKiB);
        BinaryPrimitives.WriteUInt32LittleEndian(span[CmdLine..], At(layout.CommandLine));
        BinaryPrimitives.WriteUInt32LittleEndian(span[ModsCount..], (uint)modules.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(span[ModsAddr..], At(layout.Modules));
        BinaryPrimitives.WriteUInt32LittleEndian(span[MmapLength..], (uint)(memoryMap.Count * MemoryMapEntrySize));
        BinaryPrimitives.WriteUInt32LittleEndian(span[MmapAddr..], At(layout.MemoryMap));
        BinaryPrimitives.WriteUInt32LittleEndian(span[BootLoaderNameAddr..], At(layout.BootLoaderName));

        Encoding.ASCII.GetBytes(BootLoaderName, span[layout.BootLoaderName..]);
        for (int i = 0; i < memoryMap.Count; i++)
        {
            var entry = span[(layout.MemoryMap + i * MemoryMapEntrySize)..];
            // "size" counts the bytes after itself; mmap_addr points at it.
            BinaryPrimitives.WriteUInt32LittleEndian(entry, MemoryMapEntrySize - 4);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[4..], memoryMap[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[12..], memoryMap[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[20..], (uint)memoryMap[i].Type);
        }
        for (int i = 0; i < modules.Count; i++)
        {
            var entry = span[(layout.Modules + i * ModuleEntrySize)..];
            var (start, size) = moduleRanges[i];
            BinaryPrimitives.WriteUInt32LittleEndian(entry, checked((uint)start));
            BinaryPrimitives.WriteUInt32LittleEndian(entry[4..], checked((uint)(start + size)));
            BinaryPrimitives.WriteUInt32LittleEndian(entry[8..], At(layout.ModuleStrings[i]));
        }
        Encoding.UTF8.GetBytes(commandLine, span[layout.CommandLine..]);
        for (int i = 0; i < modules.Count; i++) Encoding.UTF8.GetBytes(modules[i].String, span[layout.ModuleStrings[i]..]);
        return info;
    }

    private sealed record Offsets(int BootLoaderName, int MemoryMap, int Modules, int CommandLine, int[] ModuleStrings, int End);

    // Strings are NUL-terminated (the array starts zeroed); tables 16-byte aligned. Sizes are
    // bounded by the caller's strings (command line, module arguments), so int holds them.
    private static Offsets Layout(string commandLine, IReadOnlyList<MultibootModule> modules)
    {
        static int Align(long offset) => checked((int)((offset + Alignment - 1) & ~(long)(Alignment - 1)));
        int name = StructureSize;
        int map = Align(name + BootLoaderName.Length + 1);
        int moduleTable = Align(map + (long)MemoryMapCapacity * MemoryMapEntrySize);
        int command = Align(moduleTable + (long)modules.Count * ModuleEntrySize);
        long next = command + (long)Encoding.UTF8.GetByteCount(commandLine) + 1;
        var strings = new int[modules.Count];
        for (int i = 0; i < modules.Count; i++)
        {
            strings[i] = checked((int)next);
            next += Encoding.UTF8.GetByteCount(modules[i].String) + 1;
        }
        return new Offsets(name, map, moduleTable, command, strings, Align(next));
    }
}
