using Iced.Intel;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Benchmarks;

/// <summary>
/// The tracked-write guest, shared by kvmsharp-bench and scripts/bench/tracked_write.c: a 16-bit
/// real-mode flat binary (real mode runs at CPL0) loaded and entered at 0x1000 that makes <c>N</c>
/// dword writes to the write-tracked page at <see cref="TargetAddress"/>, then writes status 0 to
/// the debug-exit port.
/// </summary>
/// <remarks>
/// <para>The page sits between the code (0x1000) and the real-mode stack (below 0xFFF0); in real mode
/// KvmSharp writes no page tables, so nothing else lives there.</para>
/// <para>Each write stores the loop counter, so its bytes always differ from what memory holds: a
/// write of unchanged bytes makes KvmSharp ask its cmpxchg inspector (register reads and a decode)
/// and would measure that instead. The loop body holds <c>unroll</c> writes (to consecutive dwords)
/// per <c>dec ecx; jnz</c>; a remainder of N mod unroll writes of 0xFFFFFFFF runs before the loop.
/// The last iteration writes 1 to every dword used.</para>
/// <para>With <c>unchanged</c> (a diagnostic), every write stores 0 (eax) over the 0 the page already
/// holds instead: the case a failed cmpxchg must be told apart from.</para>
/// <para>Before the debug-exit write the guest reads back the first dword (reads of the read-only
/// carve do not exit: they see the backing memory) and exits with status 1 if its last write did not
/// land there, so both sides check the writes were applied by checking the exit status.</para>
/// </remarks>
public static class TrackedWriteGuest
{
    public const ulong LoadAddress = 0x1000;
    public const ulong TargetAddress = 0x8000;
    public const ulong TargetGfn = TargetAddress >> 12;
    public const ushort DebugExitPort = 0x501;
    public const ulong MemoryBytes = 1UL << 20;
    public const int DefaultUnroll = 1;

    public static byte[] Assemble(int writes, int unroll = DefaultUnroll, bool unchanged = false)
    {
        if (writes < 1) throw new ArgumentOutOfRangeException(nameof(writes), "give at least one write");
        if (unroll < 1 || unroll > 256) throw new ArgumentOutOfRangeException(nameof(unroll), "unroll must be 1..256");
        if (writes < unroll) throw new ArgumentOutOfRangeException(nameof(writes), "give at least as many writes as unroll");

        var a = new Assembler(16);
        var loop = a.CreateLabel();
        var done = a.CreateLabel();
        var park = a.CreateLabel();
        var fail = a.CreateLabel();
        var value = unchanged ? eax : ecx;

        a.mov(bx, (ushort)TargetAddress); // DS base is 0 out of reset
        a.xor(eax, eax);
        a.mov(ecx, 0xFFFF_FFFFu);
        for (int i = 0; i < writes % unroll; i++) a.mov(__dword_ptr[bx + 4 * i], value);
        a.mov(ecx, (uint)(writes / unroll));
        a.jecxz(done);
        a.Label(ref loop);
        for (int i = 0; i < unroll; i++) a.mov(__dword_ptr[bx + 4 * i], value);
        a.dec(ecx);
        a.jnz(loop);
        a.Label(ref done);
        a.cmp(__dword_ptr[bx], unchanged ? 0 : 1);
        a.jne(fail);
        a.xor(eax, eax);
        a.mov(dx, DebugExitPort);
        a.@out(dx, al); // al = 0: guest exit status 0
        a.Label(ref park);
        a.hlt();
        a.jmp(park);
        a.Label(ref fail);
        a.mov(al, 1);
        a.mov(dx, DebugExitPort);
        a.@out(dx, al); // status 1: the last write is not in memory
        a.jmp(park);

        using var stream = new MemoryStream();
        a.Assemble(new StreamCodeWriter(stream), LoadAddress);
        var bytes = stream.ToArray();
        if (LoadAddress + (ulong)bytes.Length > TargetAddress)
            throw new ArgumentOutOfRangeException(nameof(unroll), $"the guest ({bytes.Length} bytes) would reach the tracked page");
        return bytes;
    }
}
