using System.Buffers.Binary;
using System.Text;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>A minimal ELF64 vmlinux: header, two program headers (PT_LOAD, PT_NOTE), the segment, the Xen PVH note.</summary>
internal static class SyntheticElf
{
    public const int LoadHeader = 64, NoteHeader = 64 + 56, NoteBody = 0x300;

    public static byte[] Create(bool withPvhNote = true, ushort machine = 62)
    {
        var file = new byte[0x400];
        var span = file.AsSpan();
        "\u007fELF"u8.CopyTo(span);
        file[4] = 2; file[5] = 1; file[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(span[18..], machine);
        BinaryPrimitives.WriteUInt64LittleEndian(span[32..], 64);    // e_phoff
        BinaryPrimitives.WriteUInt16LittleEndian(span[54..], 56);    // e_phentsize
        BinaryPrimitives.WriteUInt16LittleEndian(span[56..], 2);     // e_phnum
        var load = span[LoadHeader..];
        BinaryPrimitives.WriteUInt32LittleEndian(load, 1);
        BinaryPrimitives.WriteUInt64LittleEndian(load[8..], 0x200);  // p_offset
        BinaryPrimitives.WriteUInt64LittleEndian(load[24..], 0x1000000);
        BinaryPrimitives.WriteUInt64LittleEndian(load[32..], 0x100);
        BinaryPrimitives.WriteUInt64LittleEndian(load[40..], 0x3000); // bss beyond the file bytes
        for (int i = 0; i < 0x100; i++) file[0x200 + i] = (byte)i;
        var note = span[NoteHeader..];
        BinaryPrimitives.WriteUInt32LittleEndian(note, 4);
        BinaryPrimitives.WriteUInt64LittleEndian(note[8..], NoteBody);
        BinaryPrimitives.WriteUInt64LittleEndian(note[32..], 24);
        var body = span[NoteBody..];
        BinaryPrimitives.WriteUInt32LittleEndian(body, 4);            // namesz "Xen\0"
        BinaryPrimitives.WriteUInt32LittleEndian(body[4..], 8);       // descsz
        BinaryPrimitives.WriteUInt32LittleEndian(body[8..], withPvhNote ? 18u : 17u);
        Encoding.ASCII.GetBytes("Xen\0").CopyTo(body[12..]);
        BinaryPrimitives.WriteUInt64LittleEndian(body[16..], 0x1000080);
        return file;
    }
}
