using KvmSharp.Vmm.Boot;

namespace KvmSharp.Vmm.Machine;

/// <summary>
/// A flat guest binary: copied to <see cref="LoadAddress"/>, entered at <see cref="Entry"/> in <see cref="Mode"/>.
/// In long mode the entry gets rdi = RAM size in bytes, rsi = vCPU id, rdx = vCPU count.
/// </summary>
public sealed record GuestImage(byte[] Bytes, ulong LoadAddress, ulong Entry, CpuMode Mode, string Name)
{
    /// <summary>Read an image file (a regular file; see <see cref="GuestFile"/> for the exceptions).</summary>
    public static GuestImage FromFile(string path, ulong entry, CpuMode mode, ulong? loadAddress = null) =>
        new(GuestFile.Read(path, "guest image", GuestFile.MaxBytes), loadAddress ?? entry, entry, mode, Path.GetFileName(path));

    /// <summary>
    /// Check before the VM exists that <paramref name="path"/> is a regular, non-empty file that fits
    /// in guest RAM below the PCI hole when loaded at <paramref name="loadAddress"/> (0 when unknown).
    /// Throws <see cref="InvalidDataException"/> (wrong kind or size), <see cref="FileNotFoundException"/>
    /// or <see cref="IOException"/>, each naming the file; returns the size.
    /// </summary>
    public static long Check(string path, ulong memoryBytes, ulong loadAddress = 0)
    {
        ulong lowEnd = Boot.Linux.LinuxLoader.LowRamEnd(memoryBytes);
        if (loadAddress >= lowEnd)
            throw new InvalidDataException($"guest image '{path}': the load address 0x{loadAddress:x} is outside the guest's {GuestFile.FormatSize(lowEnd)} of low memory");
        ulong room = lowEnd - loadAddress;
        return GuestFile.Check(path, "guest image", GuestFile.MaxBytesWithin(room),
            loadAddress == 0 ? $"the guest's {GuestFile.FormatSize(lowEnd)} of low memory"
                : $"the {GuestFile.FormatSize(room)} between its load address 0x{loadAddress:x} and the end of the guest's {GuestFile.FormatSize(lowEnd)} of low memory");
    }
}
