using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>struct boot_params (the "zero page"), filled as the 64-bit boot protocol asks.</summary>
public static class ZeroPage
{
    private const int E820Count = 0x1E8, E820Table = 0x2D0, MaxE820Entries = 128;
    private const int ExtRamdiskImage = 0x0C0, ExtRamdiskSize = 0x0C4, ExtCmdLinePtr = 0x0C8;
    private const int VidMode = 0x1FA, TypeOfLoader = 0x210, LoadFlags = 0x211, Code32Start = 0x214;
    private const int RamdiskImage = 0x218, RamdiskSize = 0x21C, HeapEndPtr = 0x224, CmdLinePtr = 0x228;
    private const byte LoadedHigh = 0x01, CanUseHeap = 0x80;

    public static byte[] Build(BzImage kernel, ulong kernelLoad, ulong commandLine, ulong initrdAddress, ulong initrdSize, IReadOnlyList<E820Entry> e820)
    {
        if (e820.Count > MaxE820Entries) throw new ArgumentException($"{e820.Count} e820 entries; the zero page holds {MaxE820Entries}");
        var page = new byte[4096];
        kernel.SetupHeader.CopyTo(page.AsSpan(BzImage.SetupHeaderOffset));
        var span = page.AsSpan();
        BinaryPrimitives.WriteUInt16LittleEndian(span[VidMode..], 0xFFFF);       // "normal" video mode
        span[TypeOfLoader] = 0xFF;                                             // an unregistered boot loader
        span[LoadFlags] |= LoadedHigh | CanUseHeap;
        BinaryPrimitives.WriteUInt32LittleEndian(span[Code32Start..], (uint)kernelLoad);
        BinaryPrimitives.WriteUInt16LittleEndian(span[HeapEndPtr..], 0xFE00);
        BinaryPrimitives.WriteUInt32LittleEndian(span[CmdLinePtr..], (uint)commandLine);
        BinaryPrimitives.WriteUInt32LittleEndian(span[ExtCmdLinePtr..], (uint)(commandLine >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(span[RamdiskImage..], (uint)initrdAddress);
        BinaryPrimitives.WriteUInt32LittleEndian(span[RamdiskSize..], (uint)initrdSize);
        BinaryPrimitives.WriteUInt32LittleEndian(span[ExtRamdiskImage..], (uint)(initrdAddress >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(span[ExtRamdiskSize..], (uint)(initrdSize >> 32));
        span[E820Count] = (byte)e820.Count;
        for (int i = 0; i < e820.Count; i++)
        {
            var entry = span[(E820Table + i * 20)..];
            BinaryPrimitives.WriteUInt64LittleEndian(entry, e820[i].Address);
            BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], e820[i].Size);
            BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], (uint)e820[i].Type);
        }
        return page;
    }
}
