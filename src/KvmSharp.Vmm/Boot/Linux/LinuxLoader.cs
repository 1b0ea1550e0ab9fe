using KvmSharp.Vmm.Memory;

namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>
/// Loads a bzImage for the 64-bit boot protocol: the protected-mode kernel at 1 MiB, the command
/// line, the initrd as high as initrd_addr_max and RAM allow, the e820 map and the zero page, and
/// ACPI tables (and an MP table, for kernels that parse it) describing the vCPUs. The boot vCPU then enters at load + 0x200 with rsi = zero page.
/// </summary>
public static class LinuxLoader
{
    public sealed record Result(ulong Entry, ulong ZeroPage, ulong InitrdAddress, ulong InitrdSize, IReadOnlyList<E820Entry> E820);

    public static Result Load(GuestPhysicalMemory memory, IReadOnlyList<(ulong Address, ulong Size)> ram, LinuxBootConfig config, int cpus)
    {
        var kernel = BzImage.Load(config.KernelPath);
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

        ulong initrdAddress = 0, initrdSize = 0;
        if (config.InitrdPath is not null)
        {
            if (!File.Exists(config.InitrdPath)) throw new FileNotFoundException($"initrd '{config.InitrdPath}' does not exist", config.InitrdPath);
            byte[] initrd = File.ReadAllBytes(config.InitrdPath);
            initrdSize = (ulong)initrd.Length;
            ulong ceiling = Math.Min(lowEnd, (ulong)kernel.InitrdAddressMax + 1);
            initrdAddress = (ceiling - initrdSize) & ~0xFFFUL;
            if (initrdSize > ceiling || initrdAddress < kernelEnd)
                throw new ArgumentException($"memory: the initrd ({initrdSize >> 20} MiB) does not fit between the kernel (ends 0x{kernelEnd:x}) and 0x{ceiling:x}; give more memory");
            memory.Write(initrdAddress, initrd);
        }

        memory.Write(LinuxBootLayout.KernelLoad, kernel.ProtectedModeKernel);
        memory.Write(LinuxBootLayout.CommandLine, commandLine);
        memory.Write(LinuxBootLayout.MpTable, MpTable.Build(LinuxBootLayout.MpTable, cpus));
        memory.Write(Acpi.AcpiTables.RsdpAddress, Acpi.AcpiTables.Build(cpus));

        var e820 = BuildE820(ram);
        memory.Write(LinuxBootLayout.ZeroPage, ZeroPage.Build(kernel, LinuxBootLayout.KernelLoad, LinuxBootLayout.CommandLine, initrdAddress, initrdSize, e820));
        return new Result(LinuxBootLayout.KernelLoad + 0x200, LinuxBootLayout.ZeroPage, initrdAddress, initrdSize, e820);
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
