using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The exit-roundtrip guest, shared by kvmsharp-bench and scripts/bench/exit_roundtrip.c: a 16-bit
/// real-mode flat binary (real mode runs at CPL0) loaded and entered at 0x1000 that makes
/// <c>N</c> port-I/O exits on <see cref="BenchPort"/>, then writes status 0 to the debug-exit port.
/// </summary>
/// <remarks>
/// The loop body holds <c>unroll</c> <c>out 0x80, al</c> instructions per <c>dec ecx; jnz</c>, so the
/// guest's own work between exits (emulated at ~1 M instructions/s at CPL0 on the PVM host) can be
/// made small next to the exit itself. A remainder of N mod unroll exits runs before the loop.
/// </remarks>
public static class ExitRoundtripGuest
{
    public const ulong LoadAddress = 0x1000;
    public const ushort BenchPort = 0x80;
    public const ushort DebugExitPort = 0x501;
    public const ulong MemoryBytes = 1UL << 20;
    public const int DefaultUnroll = 1;

    public static byte[] Assemble(int exits, int unroll = DefaultUnroll)
    {
        if (exits < 1) throw new ArgumentOutOfRangeException(nameof(exits), "give at least one exit");
        if (unroll < 1 || unroll > 256) throw new ArgumentOutOfRangeException(nameof(unroll), "unroll must be 1..256");

        var a = new Assembler(16);
        var loop = a.CreateLabel();
        var done = a.CreateLabel();
        var park = a.CreateLabel();

        a.xor(eax, eax);
        for (int i = 0; i < exits % unroll; i++) a.@out((byte)BenchPort, al);
        a.mov(ecx, (uint)(exits / unroll));
        a.jecxz(done);
        a.Label(ref loop);
        for (int i = 0; i < unroll; i++) a.@out((byte)BenchPort, al);
        a.dec(ecx);
        a.jnz(loop);
        a.Label(ref done);
        a.mov(dx, DebugExitPort);
        a.@out(dx, al); // al = 0: guest exit status 0
        a.Label(ref park);
        a.hlt();
        a.jmp(park);

        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        return stream.ToArray();
    }
}
