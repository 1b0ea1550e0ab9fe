using System.Buffers.Binary;
using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Api;

/// <summary>
/// A bzImage-shaped "kernel" (the loader's protocol 2.15, 64-bit entry) whose 64-bit entry is HLT in a loop, assembled
/// with Iced. A Linux guest gets the in-kernel irqchip, so HLT waits inside KVM: the VM stays Running and costs no CPU,
/// which is what a test that drives a VM through its API for seconds needs on a shared host.
/// </summary>
internal static class HaltingKernel
{
    public static string Write(string directory, string name = "halting-bzImage")
    {
        const int SetupSectors = 4, KernelBytes = 4096, Entry64Offset = 0x200;
        var file = new byte[(SetupSectors + 1) * 512 + KernelBytes];
        file[0x1F1] = SetupSectors;
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x1F4), KernelBytes / 16);
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x1FE), 0xAA55);
        file[0x200] = 0xEB;
        file[0x201] = 0x66;
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x202), 0x53726448); // "HdrS"
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x206), 0x020F);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x22C), 0x7FFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x230), 0x200000);
        file[0x234] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x236), 0x1);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x238), 2047);
        BinaryPrimitives.WriteUInt64LittleEndian(file.AsSpan(0x258), 0x1000000);
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x260), 0x100000);

        var a = new Assembler(64);
        var again = a.CreateLabel();
        a.Label(ref again);
        a.hlt();
        a.jmp(again);
        var code = new MemoryStream();
        a.Assemble(new StreamCodeWriter(code), 0x1000000 + Entry64Offset);
        code.ToArray().CopyTo(file, (SetupSectors + 1) * 512 + Entry64Offset);

        string path = Path.Combine(directory, name);
        File.WriteAllBytes(path, file);
        return path;
    }
}
