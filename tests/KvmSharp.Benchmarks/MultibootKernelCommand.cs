using KvmSharp.Devices.Debug;
using KvmSharp.Tests.Integration.Multiboot;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench multiboot-kernel DIR MEMORY_MIB CPUS`: writes the multiboot test kernel of the integration
/// tests (MultibootBootTests) and its module into DIR, for the testbed's check of the NativeAOT binary, and
/// prints what to pass to `kvmsharp run` and what it must answer, one KEY=VALUE a line.
/// </summary>
public static class MultibootKernelCommand
{
    public static int Run(string directory, int memoryMiB, int cpus)
    {
        Directory.CreateDirectory(directory);
        var files = MultibootTestKernel.Write(directory, (ulong)memoryMiB << 20, cpus);
        uint value = MultibootTestKernel.PassingValue(cpus);
        Console.WriteLine($"kernel={files.Kernel}");
        Console.WriteLine($"initrd={files.ModuleItem}");
        Console.WriteLine($"cmdline={MultibootTestKernel.Arguments}");
        Console.WriteLine($"debug-exit=port=0x{MultibootTestKernel.DebugExitPort:x},width=4,qemu=on");
        Console.WriteLine($"expected-value=0x{value:x}");
        Console.WriteLine($"expected-status={DebugExitPort.QemuStatus(value)}");
        return 0;
    }
}
