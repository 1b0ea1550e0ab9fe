namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>Where KvmSharp puts things in guest memory for a Linux boot (the Firecracker layout).</summary>
public static class LinuxBootLayout
{
    public const ulong ZeroPage = 0x7000;
    public const ulong CommandLine = 0x20000;
    public const ulong MpTable = 0x9FC00;      // the EBDA, where Linux looks for the MP floating pointer
    public const ulong LowMemoryEnd = 0xA0000;  // VGA hole and BIOS area above
    public const ulong KernelLoad = 0x100000;   // 1 MiB; the decompressor relocates itself
    public const ulong MinimumMemory = 64UL << 20;
}
