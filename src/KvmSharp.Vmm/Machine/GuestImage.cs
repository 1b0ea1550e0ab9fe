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
    /// Everything a VM would refuse about an image file, found before the VM exists: the entry and
    /// load address (<paramref name="loadAddress"/>, default the entry) as in <see cref="CheckPlacement"/>,
    /// then that <paramref name="path"/> is a regular, non-empty file that fits in guest RAM below the
    /// PCI hole from its load address. Throws <see cref="GuestInputException"/> (entry),
    /// <see cref="InvalidDataException"/> (the file's kind or size), <see cref="FileNotFoundException"/>
    /// or <see cref="IOException"/>, each naming what was wrong; returns the size.
    /// </summary>
    public static long Check(string path, ulong memoryBytes, ulong entry, CpuMode mode, ulong? loadAddress = null)
    {
        ulong load = loadAddress ?? entry;
        ulong lowEnd = CheckAddresses(memoryBytes, entry, load, mode);
        ulong room = lowEnd - load;
        string more = memoryBytes < VirtualMachine.LowRamLimit ? "give more memory or a lower load address" : "give a lower load address";
        return GuestFile.Check(path, "guest image", GuestFile.MaxBytesWithin(room),
            $"the {GuestFile.FormatSize(room)} between its load address 0x{load:x} and the end of the guest's {GuestFile.FormatSize(lowEnd)} of low memory; {more}");
    }

    /// <summary>The checks of <see cref="Check"/> on an image already in memory (what <see cref="VmConfig.Validate"/> runs).</summary>
    public void CheckPlacement(ulong memoryBytes)
    {
        ulong lowEnd = CheckAddresses(memoryBytes, Entry, LoadAddress, Mode);
        if ((ulong)Bytes.Length > lowEnd - LoadAddress)
            throw new GuestInputException(GuestInput.Image, $"guest image '{Name}': {Bytes.Length} bytes at 0x{LoadAddress:x} end beyond the guest's {GuestFile.FormatSize(lowEnd)} of low memory",
                $"{Bytes.Length} bytes at 0x{LoadAddress:x} end beyond the guest's {GuestFile.FormatSize(lowEnd)} of low memory");
        if (Bytes.Length == 0)
            throw new GuestInputException(GuestInput.Image, $"guest image '{Name}' is empty", "is empty");
    }

    // The entry rules of each CPU mode, and that entry and load address lie in low RAM; returns its end.
    private static ulong CheckAddresses(ulong memoryBytes, ulong entry, ulong loadAddress, CpuMode mode)
    {
        ulong lowEnd = Boot.Linux.LinuxLoader.LowRamEnd(memoryBytes);
        if (mode == CpuMode.Long && loadAddress < LongModeSetup.LowestUsableAfterTables)
            Refuse(entry, $"a long-mode image loads at or above 0x{LongModeSetup.LowestUsableAfterTables:x} (the page tables and stacks live below), not at 0x{loadAddress:x}; give e.g. 0x100000");
        if (mode == CpuMode.Real && entry > 0xFFFF)
            Refuse(entry, "real mode starts at CS:IP = 0:entry, so the entry must be below 0x10000; give e.g. 0x7c00, or use long mode");
        if (entry >= lowEnd || loadAddress >= lowEnd)
            Refuse(entry, $"is outside guest RAM (0x0-0x{lowEnd:x}, where a flat image loads{(loadAddress != entry ? $"; load address 0x{loadAddress:x}" : "")}); give a lower address or more memory");
        return lowEnd;
    }

    // "entry 0x8000: a long-mode image ..." or "entry 0x8000000 is outside ...".
    private static void Refuse(ulong entry, string reason) =>
        throw new GuestInputException(GuestInput.Entry, $"entry 0x{entry:x}{(reason.StartsWith("is ", StringComparison.Ordinal) ? " " : ": ")}{reason}", reason);
}
