using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// A Linux bzImage, checked against the x86 boot protocol (Documentation/arch/x86/boot.rst): the
/// setup header's magic, a protocol new enough for the 64-bit entry (2.12), a 64-bit entry point
/// (XLF_KERNEL_64) and a relocatable kernel. Anything else is refused with a message saying why.
/// </summary>
public sealed class BzImage
{
    public const int SetupHeaderOffset = 0x1F1;
    public const ushort MinimumProtocol = 0x020C;
    private const uint HdrSMagic = 0x53726448; // "HdrS"
    private const ushort XlfKernel64 = 1 << 0;

    private BzImage(byte[] file, string name)
    {
        File = file;
        Name = name;
    }

    public byte[] File { get; }
    public string Name { get; }
    public int SetupSectors => File[0x1F1] == 0 ? 4 : File[0x1F1];
    public ushort ProtocolVersion => BinaryPrimitives.ReadUInt16LittleEndian(File.AsSpan(0x206));
    public bool Relocatable => File[0x234] != 0;
    public uint KernelAlignment => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(0x230));
    public ushort XLoadFlags => BinaryPrimitives.ReadUInt16LittleEndian(File.AsSpan(0x236));
    public uint InitrdAddressMax => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(0x22C));
    public uint CommandLineSize => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(0x238));
    public ulong PreferredAddress => BinaryPrimitives.ReadUInt64LittleEndian(File.AsSpan(0x258));
    public uint InitSize => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(0x260));

    /// <summary>The setup header: from 0x1F1 to the end given by the jump at 0x200 (0x202 + byte at 0x201).</summary>
    public ReadOnlySpan<byte> SetupHeader => File.AsSpan(SetupHeaderOffset, 0x202 + File[0x201] - SetupHeaderOffset);

    /// <summary>The protected-mode kernel that follows the real-mode setup sectors.</summary>
    public ReadOnlySpan<byte> ProtectedModeKernel => File.AsSpan((SetupSectors + 1) * 512);

    public string Version => $"{ProtocolVersion >> 8}.{ProtocolVersion & 0xFF:D2}";

    public static BzImage Load(string path)
    {
        if (!System.IO.File.Exists(path)) throw new FileNotFoundException($"kernel '{path}' does not exist", path);
        return Parse(System.IO.File.ReadAllBytes(path), Path.GetFileName(path));
    }

    /// <summary>Check and wrap a kernel image; <see cref="InvalidDataException"/> says what is wrong.</summary>
    public static BzImage Parse(byte[] file, string name)
    {
        if (file.Length >= 4 && file[0] == 0x7F && file[1] == (byte)'E' && file[2] == (byte)'L' && file[3] == (byte)'F')
            throw new InvalidDataException($"'{name}' is an ELF file (an uncompressed vmlinux), not a bzImage: give the bzImage (vmlinuz) instead");
        if (file.Length < 0x268 + 512)
            throw new InvalidDataException($"'{name}' is not a bzImage: {file.Length} bytes is too short for a setup header");
        if (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(0x202)) != HdrSMagic)
            throw new InvalidDataException($"'{name}' is not a bzImage: no 'HdrS' setup-header magic at offset 0x202");
        var image = new BzImage(file, name);
        if (image.ProtocolVersion < MinimumProtocol)
            throw new InvalidDataException($"'{name}' uses boot protocol {image.Version}; KvmSharp needs 2.12 or newer (Linux 3.8+) for the 64-bit entry");
        if ((image.XLoadFlags & XlfKernel64) == 0)
            throw new InvalidDataException($"'{name}' has no 64-bit entry point (XLF_KERNEL_64 is clear): it is not an x86-64 kernel");
        if (!image.Relocatable)
            throw new InvalidDataException($"'{name}' is not relocatable (relocatable_kernel = 0)");
        if ((image.SetupSectors + 1) * 512 >= file.Length)
            throw new InvalidDataException($"'{name}' is truncated: {image.SetupSectors} setup sectors and no kernel after them");
        return image;
    }
}
