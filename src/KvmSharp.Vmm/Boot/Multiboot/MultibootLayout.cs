namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// Where KvmSharp puts things in guest memory for a multiboot kernel. The low page keeps the
/// real-mode IVT and the GDT of the 32-bit entry (0x500); the multiboot info and the strings and
/// tables it points to start at 0x10000; the EBDA (MP table) and the VGA/BIOS area (ACPI tables)
/// follow from 0x9FC00 to 1 MiB. Kernel segments go anywhere else in low RAM; modules follow the
/// kernel, page aligned, from 1 MiB at the lowest.
/// </summary>
public static class MultibootLayout
{
    public const ulong LowPageEnd = 0x1000;
    public const ulong InfoAddress = 0x10000;
    public const ulong InfoLimit = Linux.LinuxBootLayout.MpTable;
    public const ulong FirmwareAreaEnd = 0x100000;
    public const ulong ModulesFloor = 0x100000;
    public const ulong PageSize = 0x1000;

    /// <summary>mem_lower: conventional memory up to the VGA hole, in KiB (640), as QEMU reports it.</summary>
    public const uint LowerMemoryKiB = (uint)(Linux.LinuxBootLayout.LowMemoryEnd >> 10);
}
