namespace KvmSharp.Vmm.Boot.Linux;

/// <summary>A Linux kernel to boot: bzImage, optional initrd, command line.</summary>
public sealed record LinuxBootConfig(string KernelPath, string? InitrdPath, string CommandLine);
