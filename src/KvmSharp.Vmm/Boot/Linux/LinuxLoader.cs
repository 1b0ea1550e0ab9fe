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

    /// <summary>Check that a file is a kernel KvmSharp can boot (bzImage, or ELF vmlinux with a PVH note).</summary>
    public static void Check(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"kernel '{path}' does not exist", path);
        byte[] file = File.ReadAllBytes(path);
        if (PvhKernel.IsElf(file)) PvhKernel.Parse(file, Path.GetFileName(path));
        else BzImage.Parse(file, Path.GetFileName(path));
    }

    public static Result Load(GuestPhysicalMemory memory, IReadOnlyList<(ulong Address, ulong Size)> ram, LinuxBootConfig config, int cpus)
    {
        if (!File.Exists(config.KernelPath)) throw new FileNotFoundException($"kernel '{config.KernelPath}' does not exist", config.KernelPath);
        byte[] file = File.ReadAllBytes(config.KernelPath);
        if (PvhKernel.IsElf(file)) return LoadPvh(memory, ram, config, cpus, PvhKernel.Parse(file, Path.GetFileName(config.KernelPath)));
        var kernel = BzImage.Parse(file, Path.GetFileName(config.KernelPath));
        ulong lowEnd = ram[0].Address + ram[0].Size;
        if (lowEnd < LinuxBootLayout.MinimumMemory)
            throw new ArgumentException($"memory: {lowEnd >> 20} MiB is too little to boot Linux; give at least {LinuxBootLayout.MinimumMemory >> 20}M");

        byte[] commandLine = System.Text.Encoding.ASCII.GetBytes(config.CommandLine + "\0");
        if (kernel.CommandLineSize > 0 && (ulong)commandLine.Length > kernel.CommandLineSize + 1UL)
            throw new ArgumentException($"cmdline: {commandLine.Length - 1} bytes is longer than this kernel accepts ({kernel.CommandLineSize})");

        // The decompressor works between the load address and max(load, preferred) + init_size.
        ulong kernelEnd = Math.Max(LinuxBootLayout.KernelLoad, kernel.PreferredAddress) + kernel.InitSize;
        if (kernelEnd > lowEnd)
            throw new ArgumentException($"memory: the kernel needs memory up to 0x{kernelEnd:x} to decompress, above the {lowEnd >> 20} MiB given");

        var (initrdAddress, initrdSize) = PlaceInitrd(memory, config, kernelEnd, Math.Min(lowEnd, (ulong)kernel.InitrdAddressMax + 1));
        memory.Write(LinuxBootLayout.KernelLoad, kernel.ProtectedModeKernel);
        WriteFirmwareTables(memory, commandLine, cpus);

        var e820 = BuildE820(ram);
        memory.Write(LinuxBootLayout.ZeroPage, ZeroPage.Build(kernel, LinuxBootLayout.KernelLoad, LinuxBootLayout.CommandLine, initrdAddress, initrdSize, e820));
        return new Result(LinuxBootLayout.KernelLoad + 0x200, LinuxBootLayout.ZeroPage, initrdAddress, initrdSize, e820);
    }

    private static Result LoadPvh(GuestPhysicalMemory memory, IReadOnlyList<(ulong Address, ulong Size)> ram, LinuxBootConfig config, int cpus, PvhKernel kernel)
    {
        ulong lowEnd = ram[0].Address + ram[0].Size;
        if (kernel.End > lowEnd)
            throw new ArgumentException($"memory: '{kernel.Name}' loads up to 0x{kernel.End:x}, above the {lowEnd >> 20} MiB given");
        byte[] commandLine = System.Text.Encoding.ASCII.GetBytes(config.CommandLine + "\0");
        foreach (var (address, bytes, memorySize) in kernel.Segments)
        {
            memory.Write(address, bytes);
            if (memorySize > (ulong)bytes.Length) memory.Write(address + (ulong)bytes.Length, new byte[memorySize - (ulong)bytes.Length]);
        }
        var (initrdAddress, initrdSize) = PlaceInitrd(memory, config, kernel.End, lowEnd);
        WriteFirmwareTables(memory, commandLine, cpus);
        var e820 = BuildE820(ram);
        memory.Write(PvhStartInfo, HvmStartInfo.Build(PvhStartInfo, LinuxBootLayout.CommandLine, Acpi.AcpiTables.RsdpAddress, initrdAddress, initrdSize, e820));
        return new Result(kernel.Entry, PvhStartInfo, initrdAddress, initrdSize, e820) { IsPvh = true };
    }

    // The initrd goes as high as the ceiling allows, page aligned, above the kernel.
    private static (ulong Address, ulong Size) PlaceInitrd(GuestPhysicalMemory memory, LinuxBootConfig config, ulong kernelEnd, ulong ceiling)
    {
        if (config.InitrdPath is null) return (0, 0);
        if (!File.Exists(config.InitrdPath)) throw new FileNotFoundException($"initrd '{config.InitrdPath}' does not exist", config.InitrdPath);
        byte[] initrd = File.ReadAllBytes(config.InitrdPath);
        ulong size = (ulong)initrd.Length;
        ulong address = (ceiling - size) & ~0xFFFUL;
        if (size > ceiling || address < kernelEnd)
            throw new ArgumentException($"memory: the initrd ({size >> 20} MiB) does not fit between the kernel (ends 0x{kernelEnd:x}) and 0x{ceiling:x}; give more memory");
        memory.Write(address, initrd);
        return (address, size);
    }

    private static void WriteFirmwareTables(GuestPhysicalMemory memory, byte[] commandLine, int cpus)
    {
        memory.Write(LinuxBootLayout.CommandLine, commandLine);
        memory.Write(LinuxBootLayout.MpTable, MpTable.Build(LinuxBootLayout.MpTable, cpus));
        memory.Write(Acpi.AcpiTables.RsdpAddress, Acpi.AcpiTables.Build(cpus));
    }

    /// <summary>Low RAM up to the EBDA, the EBDA reserved (it holds the MP table), then RAM from 1 MiB.</summary>
    public static List<E820Entry> BuildE820(IReadOnlyList<(ulong Address, ulong Size)> ram)
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
        return map;
    }
}
