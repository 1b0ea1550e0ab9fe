using KvmSharp.Vmm.Memory;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// Loads a bzImage for the 64-bit boot protocol: the protected-mode kernel at 1 MiB, the command
/// line, the initrd as high as initrd_addr_max and RAM allow, the e820 map and the zero page, and
/// ACPI tables (and an MP table, for kernels that parse it) describing the vCPUs. The boot vCPU then enters at load + 0x200 with rsi = zero page.
/// </summary>
public static class LinuxLoader
{
    /// <summary>Where the boot vCPU starts: the 64-bit entry with rsi = zero page, or the PVH entry with ebx = start info.</summary>
    public sealed record Result(ulong Entry, ulong ZeroPage, ulong InitrdAddress, ulong InitrdSize, IReadOnlyList<E820Entry> E820)
    {
        public bool IsPvh { get; init; }
    }

    public const ulong PvhStartInfo = 0x6000;

    /// <summary>The longest command line: x86 Linux's COMMAND_LINE_SIZE is 2048 bytes with the NUL (for a bzImage, its cmdline_size rules).</summary>
    public const int PvhCommandLineLimit = 2047;

    /// <summary>
    /// Check that a file is a kernel KvmSharp can boot (bzImage, or ELF vmlinux with a PVH note):
    /// a regular file of at most <see cref="GuestFile.MaxKernelBytes"/> whose headers hold.
    /// Throws <see cref="InvalidDataException"/> (wrong kind, size or content),
    /// <see cref="FileNotFoundException"/> or <see cref="IOException"/>, each naming the file.
    /// </summary>
    public static void Check(string path) => ReadKernel(path);

    /// <summary>
    /// Everything <see cref="Load"/> would refuse, found before the VM exists: the kernel as in
    /// <see cref="Check(string)"/> and no larger than low RAM, the initrd as in <see cref="CheckInitrd"/>,
    /// and that kernel, command line and initrd fit in <paramref name="memoryBytes"/> of guest RAM.
    /// Throws <see cref="GuestInputException"/> for memory, cmdline or an initrd that does not fit
    /// (its <see cref="GuestInputException.Input"/> says which); otherwise as <see cref="Check(string)"/>.
    /// </summary>
    public static void Check(LinuxBootConfig config, ulong memoryBytes)
    {
        ulong lowEnd = LowRamEnd(memoryBytes);
        object kernel = ReadKernel(config.KernelPath, lowEnd);
        ulong initrdSize = config.InitrdPath is null ? 0 : (ulong)CheckInitrd(config.InitrdPath, memoryBytes);
        Plan(kernel, config, lowEnd, initrdSize);
    }

    /// <summary>Check an initrd: a regular file no larger than the guest's RAM below the PCI hole; returns its size.</summary>
    public static long CheckInitrd(string path, ulong memoryBytes)
    {
        ulong lowEnd = LowRamEnd(memoryBytes);
        return GuestFile.Check(path, "initrd", GuestFile.MaxBytesWithin(lowEnd), LowMemoryLimit(lowEnd));
    }

    public static Result Load(GuestPhysicalMemory memory, IReadOnlyList<(ulong Address, ulong Size)> ram, LinuxBootConfig config, int cpus, Acpi.AcpiPciRoot? pci = null)
    {
        ulong lowEnd = ram[0].Address + ram[0].Size;
        object kernel = ReadKernel(config.KernelPath, lowEnd);
        byte[]? initrd = config.InitrdPath is null ? null
            : GuestFile.Read(config.InitrdPath, "initrd", GuestFile.MaxBytesWithin(lowEnd), LowMemoryLimit(lowEnd));
        var plan = Plan(kernel, config, lowEnd, (ulong)(initrd?.Length ?? 0));
        if (initrd is not null) memory.Write(plan.InitrdAddress, initrd);
        WriteFirmwareTables(memory, plan.CommandLine, cpus, pci);
        var e820 = BuildE820(ram, pci);
        if (kernel is PvhKernel pvh)
        {
            foreach (var (address, bytes, memorySize) in pvh.Segments)
            {
                memory.Write(address, bytes);
                WriteZeros(memory, address + (ulong)bytes.Length, memorySize - (ulong)bytes.Length);
            }
            memory.Write(PvhStartInfo, HvmStartInfo.Build(PvhStartInfo, LinuxBootLayout.CommandLine, Acpi.AcpiTables.RsdpAddress, plan.InitrdAddress, plan.InitrdSize, e820));
            return new Result(pvh.Entry, PvhStartInfo, plan.InitrdAddress, plan.InitrdSize, e820) { IsPvh = true };
        }
        var bzImage = (BzImage)kernel;
        memory.Write(LinuxBootLayout.KernelLoad, bzImage.ProtectedModeKernel);
        memory.Write(LinuxBootLayout.ZeroPage, ZeroPage.Build(bzImage, LinuxBootLayout.KernelLoad, LinuxBootLayout.CommandLine, plan.InitrdAddress, plan.InitrdSize, e820));
        return new Result(LinuxBootLayout.KernelLoad + 0x200, LinuxBootLayout.ZeroPage, plan.InitrdAddress, plan.InitrdSize, e820);
    }

    /// <summary>Low RAM as the VM lays it out: guest RAM up to the PCI hole at 3 GiB.</summary>
    public static ulong LowRamEnd(ulong memoryBytes) => Math.Min(memoryBytes, Machine.VirtualMachine.LowRamLimit);

    /// <summary>The checks of <see cref="Check(LinuxBootConfig, ulong)"/> on kernel bytes already read, and an initrd size.</summary>
    internal static void Check(byte[] kernelFile, string name, LinuxBootConfig config, ulong memoryBytes, ulong initrdSize) =>
        Plan(ParseKernel(kernelFile, name), config, LowRamEnd(memoryBytes), initrdSize);

    // A BzImage or a PvhKernel, read as a regular file of bounded size. A file larger than low RAM is
    // refused by its size before a byte is read: a bzImage that large cannot fit; an ELF vmlinux could
    // (debug sections are not loaded), but reading it whole would take more than the guest's memory.
    private static object ReadKernel(string path, ulong lowEnd = ulong.MaxValue) =>
        ParseKernel(lowEnd < GuestFile.MaxKernelBytes
                ? GuestFile.Read(path, "kernel", (long)lowEnd, LowMemoryLimit(lowEnd))
                : GuestFile.Read(path, "kernel", GuestFile.MaxKernelBytes),
            Path.GetFileName(path));

    // "the guest's 64 MiB of low memory; give more memory", for a file larger than that.
    private static string LowMemoryLimit(ulong lowEnd) =>
        $"the guest's {GuestFile.FormatSize(lowEnd)} of low memory{(lowEnd < Machine.VirtualMachine.LowRamLimit ? "; give more memory" : "")}";

    private static ulong MiBAbove(ulong bytes) => (bytes >> 20) + ((bytes & 0xFFFFF) != 0 ? 1UL : 0);

    private static object ParseKernel(byte[] file, string name) =>
        PvhKernel.IsElf(file) ? PvhKernel.Parse(file, name) : BzImage.Parse(file, name);

    private readonly record struct Placement(byte[] CommandLine, ulong InitrdAddress, ulong InitrdSize);

    // Where everything goes, from headers and sizes alone, so Check and Load refuse the same things.
    private static Placement Plan(object kernel, LinuxBootConfig config, ulong lowEnd, ulong initrdSize)
    {
        if (lowEnd < LinuxBootLayout.MinimumMemory)
            throw new GuestInputException(GuestInput.Memory, $"{lowEnd >> 20} MiB is too little to boot Linux; give at least {LinuxBootLayout.MinimumMemory >> 20}M");
        byte[] commandLine = System.Text.Encoding.ASCII.GetBytes(config.CommandLine + "\0");
        // The command line lives at 0x20000, below the MP table; a header's cmdline_size cannot move that.
        const ulong CommandLineSpace = LinuxBootLayout.MpTable - LinuxBootLayout.CommandLine - 1;
        (ulong commandLineLimit, string limitSource) = kernel is BzImage { CommandLineSize: > 0 } b
            ? b.CommandLineSize <= CommandLineSpace ? (b.CommandLineSize, "cmdline_size in its header") : (CommandLineSpace, "the space KvmSharp keeps for it")
            : ((ulong)PvhCommandLineLimit, "x86 Linux's limit");
        if ((ulong)commandLine.Length - 1 > commandLineLimit)
            throw new GuestInputException(GuestInput.CommandLine,
                $"{commandLine.Length - 1} bytes is longer than this kernel accepts ({commandLineLimit} bytes, {limitSource}); shorten it");

        ulong kernelEnd, ceiling;
        if (kernel is PvhKernel pvh)
        {
            if (pvh.End > lowEnd)
                throw new GuestInputException(GuestInput.Memory, $"kernel '{pvh.Name}' loads up to 0x{pvh.End:x}, above the {GuestFile.FormatSize(lowEnd)} of low memory given; {GiveMemoryUpTo(pvh.End)}");
            (kernelEnd, ceiling) = (pvh.End, lowEnd);
        }
        else
        {
            var bzImage = (BzImage)kernel;
            // The decompressor works between the load address and max(load, preferred) + init_size;
            // BzImage.Parse refused a pref_address + init_size that wraps.
            kernelEnd = Math.Max(LinuxBootLayout.KernelLoad, bzImage.PreferredAddress) + bzImage.InitSize;
            if (kernelEnd > lowEnd)
                throw new GuestInputException(GuestInput.Memory, $"kernel '{bzImage.Name}' needs memory up to 0x{kernelEnd:x} to decompress, above the {GuestFile.FormatSize(lowEnd)} of low memory given; {GiveMemoryUpTo(kernelEnd)}");
            ceiling = Math.Min(lowEnd, (ulong)bzImage.InitrdAddressMax + 1);
        }
        if (config.InitrdPath is null) return new Placement(commandLine, 0, 0);

        // The initrd goes as high as the ceiling allows, page aligned, above the kernel.
        if (initrdSize > ceiling || ((ceiling - initrdSize) & ~0xFFFUL) < kernelEnd)
        {
            string reason = $"the initrd ({GuestFile.FormatSize(initrdSize)}) does not fit between the kernel (ends 0x{kernelEnd:x}) and 0x{ceiling:x}; give more memory";
            throw new GuestInputException(GuestInput.Initrd, $"memory: {reason}", reason);
        }
        return new Placement(commandLine, (ceiling - initrdSize) & ~0xFFFUL, initrdSize);
    }

    // Low RAM ends at the PCI hole: past it, no --memory helps.
    private static string GiveMemoryUpTo(ulong end) =>
        end <= Machine.VirtualMachine.LowRamLimit ? $"give at least {MiBAbove(end)}M of memory" : "this kernel cannot be placed below the PCI hole at 3 GiB";

    // Guest RAM starts zeroed, but a restarted VM reuses it: clear a segment's bss in bounded chunks.
    private static void WriteZeros(GuestPhysicalMemory memory, ulong address, ulong length)
    {
        if (length == 0) return;
        var zeros = new byte[(int)Math.Min(length, 1UL << 20)];
        for (ulong done = 0; done < length;)
        {
            int chunk = (int)Math.Min(length - done, (ulong)zeros.Length);
            memory.Write(address + done, zeros.AsSpan(0, chunk));
            done += (ulong)chunk;
        }
    }

    private static void WriteFirmwareTables(GuestPhysicalMemory memory, byte[] commandLine, int cpus, Acpi.AcpiPciRoot? pci)
    {
        memory.Write(LinuxBootLayout.CommandLine, commandLine);
        memory.Write(LinuxBootLayout.MpTable, MpTable.Build(LinuxBootLayout.MpTable, cpus));
        memory.Write(Acpi.AcpiTables.RsdpAddress, Acpi.AcpiTables.Build(cpus, pci));
    }

    /// <summary>Low RAM up to the EBDA, the EBDA reserved (it holds the MP table), then RAM from 1 MiB; with PCI, its ECAM reserved (Linux trusts MMCONFIG only in reserved memory).</summary>
    public static List<E820Entry> BuildE820(IReadOnlyList<(ulong Address, ulong Size)> ram, Acpi.AcpiPciRoot? pci = null)
    {
        var map = new List<E820Entry>
        {
            new(0, LinuxBootLayout.MpTable, E820Type.Ram),
            new(LinuxBootLayout.MpTable, LinuxBootLayout.LowMemoryEnd - LinuxBootLayout.MpTable, E820Type.Reserved),
        };
        foreach (var (address, size) in ram)
        {
            ulong start = Math.Max(address, LinuxBootLayout.KernelLoad);
            ulong end = address + size;
            if (end > start) map.Add(new E820Entry(start, end - start, E820Type.Ram));
        }
        if (pci is not null) map.Add(new E820Entry(pci.EcamBase, pci.EcamSize, E820Type.Reserved));
        map.Sort((a, b) => a.Address.CompareTo(b.Address));
        return map;
    }
}
