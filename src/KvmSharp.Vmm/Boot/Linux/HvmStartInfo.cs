using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// struct hvm_start_info (xen/include/public/arch-x86/hvm/start_info.h, version 1): what a PVH
/// kernel reads at entry, with the command line, the initrd as module 0, the memory map and the RSDP.
/// </summary>
public static class HvmStartInfo
{
    public const uint Magic = 0x336EC578;
    public const int Size = 56, ModuleEntrySize = 32, MemoryMapEntrySize = 24;

    /// <summary>The start info followed by its module list and memory map, laid out from <paramref name="address"/>.</summary>
    public static byte[] Build(ulong address, ulong commandLine, ulong rsdp, ulong initrdAddress, ulong initrdSize, IReadOnlyList<E820Entry> memoryMap)
    {
        int modules = initrdSize > 0 ? 1 : 0;
        ulong moduleList = address + Size;
        ulong map = moduleList + (ulong)(modules * ModuleEntrySize);
        var blob = new byte[Size + modules * ModuleEntrySize + memoryMap.Count * MemoryMapEntrySize];
        var info = blob.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(info, Magic);
        BinaryPrimitives.WriteUInt32LittleEndian(info[4..], 1);                 // version: has the memory map
        BinaryPrimitives.WriteUInt32LittleEndian(info[12..], (uint)modules);
        BinaryPrimitives.WriteUInt64LittleEndian(info[16..], modules > 0 ? moduleList : 0);
        BinaryPrimitives.WriteUInt64LittleEndian(info[24..], commandLine);
        BinaryPrimitives.WriteUInt64LittleEndian(info[32..], rsdp);
        BinaryPrimitives.WriteUInt64LittleEndian(info[40..], map);
        BinaryPrimitives.WriteUInt32LittleEndian(info[48..], (uint)memoryMap.Count);
        if (modules > 0)
        {
            var module = info[Size..];
            BinaryPrimitives.WriteUInt64LittleEndian(module, initrdAddress);
            BinaryPrimitives.WriteUInt64LittleEndian(module[8..], initrdSize);
        }
        for (int i = 0; i < memoryMap.Count; i++)
        {
            var entry = info[(Size + modules * ModuleEntrySize + i * MemoryMapEntrySize)..];
            BinaryPrimitives.WriteUInt64LittleEndian(entry, memoryMap[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], memoryMap[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], (uint)memoryMap[i].Type);
        }
        return blob;
    }
}
