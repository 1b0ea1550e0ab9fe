using System.Buffers.Binary;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>Files and directories for CLI cases, deleted on dispose.</summary>
internal sealed class TempFiles : IDisposable
{
    public TempFiles() => Directory.CreateDirectory(Root);

    public string Root { get; } = Path.Combine(Path.GetTempPath(), $"kvmsharp-cli-{Guid.NewGuid():N}");

    public string Write(string name, byte[] bytes)
    {
        string path = Path.Combine(Root, name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public string WriteText(string name, string text) => Write(name, System.Text.Encoding.UTF8.GetBytes(text));

    /// <summary>A sparse file of <paramref name="size"/> bytes: large without using the disk.</summary>
    public string Sparse(string name, long size)
    {
        string path = Path.Combine(Root, name);
        using var stream = new FileStream(path, FileMode.CreateNew);
        stream.SetLength(size);
        return path;
    }

    /// <summary>A bzImage-shaped kernel the loader accepts: protocol 2.15, 64-bit entry, relocatable, cmdline_size 2047, syssize matching its 4 KiB kernel, init_size 1 MiB at 16 MiB.</summary>
    public string BzImage(string name = "bzImage")
    {
        const int SetupSectors = 4, KernelBytes = 4096;
        var file = new byte[(SetupSectors + 1) * 512 + KernelBytes];
        file[0x1F1] = SetupSectors;
        BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(0x1F4), KernelBytes / 16); // syssize, in 16-byte units
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
        return Write(name, file);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
