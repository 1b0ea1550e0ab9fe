using System.Buffers.Binary;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// A Linux bzImage, checked against the x86 boot protocol (Documentation/arch/x86/boot.rst): the
/// setup header's magic, a protocol new enough for the 64-bit entry (2.12), a 64-bit entry point
/// (XLF_KERNEL_64), a relocatable kernel, and every size and address the loader relies on
/// (setup_sects, the header's length, syssize against the file, init_size, pref_address). Anything
/// else is refused with an <see cref="InvalidDataException"/> saying why, with the numbers.
/// </summary>
public sealed class BzImage
{
    public const int SetupHeaderOffset = 0x1F1;
    public const ushort MinimumProtocol = 0x020C;
    private const uint HdrSMagic = 0x53726448; // "HdrS"
    private const ushort XlfKernel64 = 1 << 0;
    private const int SectorSize = 512;

    // Offsets of the setup header fields the loader reads.
    private const int SetupSectsOffset = 0x1F1, SysSizeOffset = 0x1F4, JumpOffset = 0x200, HeaderOffset = 0x202;
    private const int VersionOffset = 0x206, InitrdAddrMaxOffset = 0x22C, KernelAlignmentOffset = 0x230;
    private const int RelocatableOffset = 0x234, XLoadFlagsOffset = 0x236, CmdlineSizeOffset = 0x238;
    private const int PrefAddressOffset = 0x258, InitSizeOffset = 0x260;

    /// <summary>The setup header must reach past init_size and handover_offset (protocol 2.11+).</summary>
    public const int MinimumSetupHeaderEnd = 0x268;

    private BzImage(byte[] file, string name)
    {
        File = file;
        Name = name;
    }

    public byte[] File { get; }
    public string Name { get; }
    public int SetupSectors => File[SetupSectsOffset] == 0 ? 4 : File[SetupSectsOffset];

    /// <summary>Bytes before the protected-mode kernel: the boot sector and the setup sectors.</summary>
    public int SetupBytes => (SetupSectors + 1) * SectorSize;

    /// <summary>syssize: the protected-mode kernel's length in 16-byte paragraphs.</summary>
    public uint SysSize => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(SysSizeOffset));
    public ushort ProtocolVersion => BinaryPrimitives.ReadUInt16LittleEndian(File.AsSpan(VersionOffset));
    public bool Relocatable => File[RelocatableOffset] != 0;
    public uint KernelAlignment => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(KernelAlignmentOffset));
    public ushort XLoadFlags => BinaryPrimitives.ReadUInt16LittleEndian(File.AsSpan(XLoadFlagsOffset));
    public uint InitrdAddressMax => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(InitrdAddrMaxOffset));
    public uint CommandLineSize => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(CmdlineSizeOffset));
    public ulong PreferredAddress => BinaryPrimitives.ReadUInt64LittleEndian(File.AsSpan(PrefAddressOffset));
    public uint InitSize => BinaryPrimitives.ReadUInt32LittleEndian(File.AsSpan(InitSizeOffset));

    /// <summary>Where the setup header ends: 0x202 + the byte at 0x201 (the jump over the header).</summary>
    public int SetupHeaderEnd => HeaderOffset + File[JumpOffset + 1];

    /// <summary>The setup header: from 0x1F1 to <see cref="SetupHeaderEnd"/>.</summary>
    public ReadOnlySpan<byte> SetupHeader => File.AsSpan(SetupHeaderOffset, SetupHeaderEnd - SetupHeaderOffset);

    /// <summary>The protected-mode kernel that follows the setup sectors: syssize paragraphs (a signature appended after it is not loaded).</summary>
    public ReadOnlySpan<byte> ProtectedModeKernel => File.AsSpan(SetupBytes, checked((int)(SysSize * 16UL)));

    public string Version => $"{ProtocolVersion >> 8}.{ProtocolVersion & 0xFF:D2}";

    /// <summary>Read (a regular file of at most <see cref="GuestFile.MaxKernelBytes"/>) and check a bzImage.</summary>
    public static BzImage Load(string path) => Parse(GuestFile.Read(path, "kernel", GuestFile.MaxKernelBytes), Path.GetFileName(path));

    /// <summary>Check and wrap a kernel image; <see cref="InvalidDataException"/> says what is wrong.</summary>
    public static BzImage Parse(byte[] file, string name)
    {
        if (PvhKernel.IsElf(file))
            throw new InvalidDataException($"'{name}' is an ELF file (an uncompressed vmlinux), not a bzImage: give the bzImage (vmlinuz) instead");
        if (file.Length < MinimumSetupHeaderEnd + SectorSize)
            throw new InvalidDataException($"'{name}' is not a bzImage: {file.Length} bytes is too short for a setup header");
        if (BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(HeaderOffset)) != HdrSMagic)
            throw new InvalidDataException($"'{name}' is not a bzImage: no 'HdrS' setup-header magic at offset 0x202");
        var image = new BzImage(file, name);
        if (image.ProtocolVersion < MinimumProtocol)
            throw new InvalidDataException($"'{name}' uses boot protocol {image.Version}; KvmSharp needs 2.12 or newer (Linux 3.8+) for the 64-bit entry");
        if (image.SetupHeaderEnd < MinimumSetupHeaderEnd)
            throw new InvalidDataException($"'{name}' has a setup header ending at 0x{image.SetupHeaderEnd:x} (jump byte at 0x201 is 0x{file[JumpOffset + 1]:x}); protocol {image.Version} needs it to reach 0x{MinimumSetupHeaderEnd:x}");
        if ((image.XLoadFlags & XlfKernel64) == 0)
            throw new InvalidDataException($"'{name}' has no 64-bit entry point (XLF_KERNEL_64 is clear): it is not an x86-64 kernel");
        if (!image.Relocatable)
            throw new InvalidDataException($"'{name}' is not relocatable (relocatable_kernel = 0)");

        // setup_sects is one byte, so SetupBytes is at most 128 KiB: no overflow below.
        if (image.SetupBytes >= file.Length)
            throw new InvalidDataException($"'{name}' is truncated: {image.SetupSectors} setup sectors (0x{image.SetupBytes:x} bytes) and no kernel after them in a file of 0x{file.Length:x} bytes");
        ulong kernelBytes = image.SysSize * 16UL;
        if (kernelBytes == 0)
            throw new InvalidDataException($"'{name}' declares an empty protected-mode kernel (syssize 0)");
        if ((ulong)image.SetupBytes + kernelBytes > (ulong)file.Length)
            throw new InvalidDataException($"'{name}' is truncated: the header declares 0x{image.SetupBytes:x} setup bytes + 0x{kernelBytes:x} kernel bytes (syssize 0x{image.SysSize:x}), but the file is 0x{file.Length:x} bytes");
        if (image.InitSize < kernelBytes)
            throw new InvalidDataException($"'{name}' declares init_size 0x{image.InitSize:x}, smaller than its own 0x{kernelBytes:x}-byte kernel");
        if (image.PreferredAddress > ulong.MaxValue - image.InitSize)
            throw new InvalidDataException($"'{name}' declares pref_address 0x{image.PreferredAddress:x} + init_size 0x{image.InitSize:x}, beyond the address space");
        return image;
    }
}
