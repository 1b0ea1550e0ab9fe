using Iced.Intel;
using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Boot;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>Builds small VMs around guest code assembled with Iced at test time.</summary>
public static class TestGuest
{
    public const ulong CodeAddress = 0x100000;
    public const ushort DebugExitPort = 0x501;

    /// <summary>Assemble 64-bit code at <see cref="CodeAddress"/>.</summary>
    public static GuestImage LongMode(Action<Assembler> emit, string name = "test-guest")
    {
        var assembler = new Assembler(64);
        emit(assembler);
        var stream = new MemoryStream();
        assembler.Assemble(new StreamCodeWriter(stream), CodeAddress);
        return new GuestImage(stream.ToArray(), CodeAddress, CodeAddress, CpuMode.Long, name);
    }

    public static VirtualMachine Create(GuestImage image, ulong memory = 16UL << 20, int cpus = 1, ISerialSink? sink = null) =>
        VirtualMachine.Create(new VmConfig { MemoryBytes = memory, Cpus = cpus, Image = image, SerialSink = sink ?? new CapturingSerialSink() });

    /// <summary>Emit `out DebugExitPort, status; hlt`.</summary>
    public static void ExitWith(Assembler a, byte status)
    {
        a.mov(AssemblerRegisters.dx, DebugExitPort);
        a.mov(AssemblerRegisters.al, status);
        a.@out(AssemblerRegisters.dx, AssemblerRegisters.al);
        a.hlt();
    }

    /// <summary>Start the VM and wait for it to end, failing after <paramref name="timeout"/>.</summary>
    public static VmOutcome RunToEnd(VirtualMachine vm, TimeSpan? timeout = null)
    {
        vm.Start();
        if (!vm.WaitForExit(timeout ?? TimeSpan.FromSeconds(30), out var outcome))
        {
            vm.Stop("test timeout");
            throw new TimeoutException($"guest did not finish in {timeout ?? TimeSpan.FromSeconds(30)}");
        }
        return outcome!;
    }
}
