namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// A multiboot kernel to boot: the kernel file, its modules in order, and the command line the kernel
/// receives (the kernel's path, a space and the user's text, as GRUB and QEMU pass it).
/// </summary>
public sealed record MultibootBootConfig(string KernelPath, IReadOnlyList<MultibootModule> Modules, string CommandLine)
{
    /// <summary>The command line GRUB and QEMU give a multiboot kernel: its path, then the arguments (argv[0] first).</summary>
    public static string KernelCommandLine(string kernelPath, string arguments) =>
        arguments.Length == 0 ? kernelPath : $"{kernelPath} {arguments}";
}
