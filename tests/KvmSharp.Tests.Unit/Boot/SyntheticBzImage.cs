using System.Buffers.Binary;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// Builds a minimal bzImage-shaped file: a setup header with chosen fields and a fake kernel body
/// padded to whole 16-byte paragraphs, as Linux's build tool does, with syssize set to match.
/// </summary>
internal static class SyntheticBzImage
{
    public static byte[] Create(ushort protocol = 0x020F, ushort xloadflags = 0x1, byte relocatable = 1, int setupSectors = 4, int kernelBytes = 4096, uint initSize = 0x100000, uint initrdMax = 0x7FFFFFFF)
    {
        int sysSize = (kernelBytes + 15) / 16;
        var file = new byte[(setupSectors + 1) * 512 + sysSize * 16];
        file[0x1F1] = (byte)setupSectors;
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x1F4), (uint)sysSize);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x1FE), 0xAA55);
        file[0x200] = 0xEB;          // jmp short
        file[0x201] = 0x66;          // setup header ends at 0x202 + 0x66 = 0x268
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x202), 0x53726448);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x206), protocol);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x22C), initrdMax);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x230), 0x200000);
        file[0x234] = relocatable;
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x236), xloadflags);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x238), 2047);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x258), 0x1000000);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x260), initSize);
        for (int i = 0; i < kernelBytes; i++) file[(setupSectors + 1) * 512 + i] = (byte)(i * 7);
        return file;
    }
}
