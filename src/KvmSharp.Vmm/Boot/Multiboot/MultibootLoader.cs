using System.Buffers.Binary;
using KvmSharp.Kvm;
using KvmSharp.Vmm.Boot.Linux;
using KvmSharp.Vmm.Memory;

namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// Loads a multiboot (version 1) kernel as GRUB and QEMU do: its segments at their physical
/// addresses, the modules after it (page aligned), the multiboot info at
/// <see cref="MultibootLayout.InfoAddress"/>, the MP and ACPI tables describing the vCPUs; the boot
/// vCPU then enters in flat 32-bit protected mode with eax = 0x2BADB002 and ebx = the info. The other
/// vCPUs wait for INIT/SIPI in the in-kernel LAPIC.
/// </summary>
public static class MultibootLoader
{
    public sealed record Result(uint Entry, ulong InfoAddress, IReadOnlyList<(ulong Address, ulong Size)> Modules, IReadOnlyList<E820Entry> MemoryMap);

    private const uint BzImageMagic = 0x53726448; // "HdrS" at 0x202

    /// <summary>
    /// Whether `--kernel` <paramref name="file"/> boots through multiboot. A bzImage ("HdrS") and an
    /// ELF vmlinux the PVH loader accepts (a PVH note) stay Linux; any other file whose first 8 KiB hold
    /// the multiboot magic is multiboot (its header is then checked by <see cref="MultibootKernel.Parse"/>).
    /// </summary>
    public static bool IsMultiboot(byte[] file, string name)
    {
        if (MultibootHeader.FindMagic(file) is null) return false;
        if (!PvhKernel.IsElf(file)) return !(file.Length >= 0x206 && BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(0x202)) == BzImageMagic);
        if (file.Length <= 4 || file[4] != 2) return true; // PVH kernels are 64-bit ELF files
        try
        {
            PvhKernel.Parse(file, name);
            return false;
        }
        catch (InvalidDataException)
        {
            return true;
        }
    }

    /// <summary>
    /// Tell whether a kernel file (a regular file of bounded size, see <see cref="GuestFile"/>) is a multiboot
    /// kernel: its first 8 KiB first, and the whole file only when they hold the multiboot magic.
    /// </summary>
    public static bool IsMultiboot(string kernelPath)
    {
        GuestFile.Check(kernelPath, "kernel", GuestFile.MaxKernelBytes);
        var head = new byte[MultibootHeader.SearchLimit];
        int length;
        using (var stream = new FileStream(kernelPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite, bufferSize: 0))
            length = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        if (MultibootHeader.FindMagic(head.AsSpan(0, length)) is null) return false;
        return IsMultiboot(GuestFile.Read(kernelPath, "kernel", GuestFile.MaxKernelBytes), Path.GetFileName(kernelPath));
    }

    /// <summary>Check a module: a regular, non-empty file no larger than the guest's low RAM; returns its size.</summary>
    public static long CheckModule(string path, ulong memoryBytes)
    {
        ulong lowEnd = LinuxLoader.LowRamEnd(memoryBytes);
        return GuestFile.Check(path, "module", GuestFile.MaxBytesWithin(lowEnd), $"the guest's {GuestFile.FormatSize(lowEnd)} of low memory");
    }

    /// <summary>
    /// Everything <see cref="Load"/> would refuse, before the VM exists: the kernel's header and
    /// segments, each module, and that kernel, info and modules fit in <paramref name="memoryBytes"/>
    /// without overlapping. Throws <see cref="InvalidDataException"/> (the kernel's content),
    /// <see cref="GuestInputException"/> (placement: memory, kernel, cmdline or modules),
    /// <see cref="FileNotFoundException"/> or <see cref="IOException"/>.
    /// </summary>
    public static void Check(MultibootBootConfig config, ulong memoryBytes)
    {
        ulong lowEnd = LinuxLoader.LowRamEnd(memoryBytes);
        var kernel = ReadKernel(config.KernelPath, lowEnd);
        var sizes = config.Modules.Select(m => (ulong)CheckModule(m.Path, memoryBytes)).ToList();
        Plan(kernel, config, lowEnd, sizes);
    }

    /// <summary>The checks of <see cref="Check(MultibootBootConfig, ulong)"/> on kernel bytes already read, and module sizes (for tests).</summary>
    public static void Check(byte[] kernelFile, string name, MultibootBootConfig config, ulong memoryBytes, IReadOnlyList<ulong> moduleSizes) =>
        Plan(MultibootKernel.Parse(kernelFile, name), config, LinuxLoader.LowRamEnd(memoryBytes), moduleSizes);

    public static Result Load(GuestPhysicalMemory memory, IReadOnlyList<(ulong Address, ulong Size)> ram, MultibootBootConfig config, int cpus, Acpi.AcpiPciRoot? pci = null)
    {
        ulong lowEnd = ram[0].Address + ram[0].Size;
        var kernel = ReadKernel(config.KernelPath, lowEnd);
        var modules = config.Modules.Select(m => GuestFile.Read(m.Path, "module", GuestFile.MaxBytesWithin(lowEnd), $"the guest's {GuestFile.FormatSize(lowEnd)} of low memory")).ToList();
        var placed = Plan(kernel, config, lowEnd, modules.Select(m => (ulong)m.Length).ToList());

        foreach (var segment in kernel.Segments)
        {
            memory.Write(segment.PhysicalAddress, segment.Bytes);
            WriteZeros(memory, segment.PhysicalAddress + (ulong)segment.Bytes.Length, segment.MemorySize - (ulong)segment.Bytes.Length);
        }
        for (int i = 0; i < modules.Count; i++) memory.Write(placed[i].Address, modules[i]);
        // Test kernels written for QEMU find their CPUs in ACPI (or the MP table), as Linux does.
        memory.Write(LinuxBootLayout.MpTable, MpTable.Build(LinuxBootLayout.MpTable, cpus));
        memory.Write(Acpi.AcpiTables.RsdpAddress, Acpi.AcpiTables.Build(cpus, pci));
        var map = LinuxLoader.BuildE820(ram, pci);
        memory.Write(MultibootLayout.InfoAddress, MultibootInfo.Build(MultibootLayout.InfoAddress, config.CommandLine, config.Modules, placed,
            MultibootLayout.LowerMemoryKiB, UpperMemoryKiB(lowEnd), map));
        return new Result(kernel.Entry, MultibootLayout.InfoAddress, placed, map);
    }

    /// <summary>mem_upper: KiB of RAM from 1 MiB up to the first hole (the end of low RAM).</summary>
    public static uint UpperMemoryKiB(ulong lowEnd) => lowEnd <= MultibootLayout.ModulesFloor ? 0 : (uint)((lowEnd - MultibootLayout.ModulesFloor) >> 10);

    /// <summary>The boot vCPU's entry: flat 32-bit protected mode, paging off, eax = 0x2BADB002, ebx = the info.</summary>
    public static void Enter(KvmVcpu vcpu, Result boot)
    {
        ProtectedModeSetup.Enter(vcpu, boot.Entry, ebx: boot.InfoAddress);
        var registers = vcpu.GetRegisters();
        registers.rax = MultibootHeader.BootloaderMagic;
        vcpu.SetRegisters(registers);
    }

    // A kernel larger than low RAM cannot load: refused by its size before a byte is read.
    private static MultibootKernel ReadKernel(string path, ulong lowEnd) =>
        MultibootKernel.Parse(lowEnd < GuestFile.MaxKernelBytes
                ? GuestFile.Read(path, "kernel", (long)lowEnd, $"the guest's {GuestFile.FormatSize(lowEnd)} of low memory")
                : GuestFile.Read(path, "kernel", GuestFile.MaxKernelBytes),
            Path.GetFileName(path));

    // Where the modules go, after checking that every segment lies in low RAM outside the areas KvmSharp writes.
    private static List<(ulong Address, ulong Size)> Plan(MultibootKernel kernel, MultibootBootConfig config, ulong lowEnd, IReadOnlyList<ulong> moduleSizes)
    {
        ulong infoSize = MultibootInfo.Size(config.CommandLine, config.Modules);
        ulong infoEnd = MultibootLayout.InfoAddress + infoSize;
        if (infoEnd > MultibootLayout.InfoLimit || infoEnd > lowEnd)
            throw new GuestInputException(GuestInput.CommandLine,
                $"the multiboot info with this command line and these module names takes {infoSize} bytes, more than fit at 0x{MultibootLayout.InfoAddress:x}-0x{Math.Min(lowEnd, MultibootLayout.InfoLimit):x}; shorten the command line or the module arguments");
        (ulong Start, ulong End, string What)[] reserved =
        [
            (0, MultibootLayout.LowPageEnd, "the real-mode IVT and the GDT of the 32-bit entry"),
            (MultibootLayout.InfoAddress, infoEnd, "the multiboot info"),
            (MultibootLayout.InfoLimit, MultibootLayout.FirmwareAreaEnd, "the EBDA, VGA and BIOS area (MP and ACPI tables)"),
        ];
        foreach (var segment in kernel.Segments)
        {
            string range = $"0x{segment.PhysicalAddress:x}-0x{segment.End:x}";
            if (segment.End > lowEnd)
            {
                if (segment.End <= Machine.VirtualMachine.LowRamLimit)
                    throw new GuestInputException(GuestInput.Memory, $"kernel '{kernel.Name}' ({segment.Source}) loads at {range}, beyond the guest's {GuestFile.FormatSize(lowEnd)} of low memory; give at least {MiBAbove(segment.End)}M of memory");
                throw new GuestInputException(GuestInput.Kernel, $"{segment.Source}: the segment at {range} lies outside guest RAM below the PCI hole at 3 GiB, where a multiboot kernel must load");
            }
            foreach (var (start, end, what) in reserved)
                if (segment.PhysicalAddress < end && start < segment.End)
                    throw new GuestInputException(GuestInput.Kernel, $"{segment.Source}: the segment at {range} overlaps {what} at 0x{start:x}-0x{end:x}; link the kernel at 1 MiB or above");
        }

        var placed = new List<(ulong, ulong)>();
        ulong next = AlignUp(Math.Max(kernel.End, MultibootLayout.ModulesFloor));
        for (int i = 0; i < moduleSizes.Count; i++)
        {
            ulong size = moduleSizes[i];
            if (next > lowEnd || size > lowEnd - next)
            {
                string reason = $"module {i + 1} ('{config.Modules[i].Path}', {GuestFile.FormatSize(size)}) does not fit between 0x{next:x} (after the kernel{(i > 0 ? " and the modules before it" : "")}) and the end of the guest's {GuestFile.FormatSize(lowEnd)} of low memory; give more memory";
                throw new GuestInputException(GuestInput.Initrd, $"memory: {reason}", reason);
            }
            placed.Add((next, size));
            next = AlignUp(next + size);
        }
        return placed;
    }

    private static ulong AlignUp(ulong address) => (address + MultibootLayout.PageSize - 1) & ~(MultibootLayout.PageSize - 1);

    private static ulong MiBAbove(ulong bytes) => (bytes >> 20) + ((bytes & 0xFFFFF) != 0 ? 1UL : 0);

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
}
