using Iced.Intel;
using Tmds.Linux;
using static Iced.Intel.AssemblerRegisters;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// A real `lock cmpxchg16b` on host memory, for a guest's cmpxchg16b on a tracked page: .NET has no
/// 16-byte Interlocked, and the guest's other vCPUs (native readers on write-trapped pages included)
/// must never see a torn value. The stub is assembled with Iced once and mapped executable.
/// </summary>
internal static unsafe class NativeCompareExchange16
{
    private static readonly Lazy<nint> Stub = new(Build, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Compare the 16 bytes at <paramref name="target"/> (16-byte aligned) with expected; store desired if equal. On return expected holds the old value.</summary>
    public static bool CompareExchange(byte* target, ref UInt128 expected, UInt128 desired)
    {
        var function = (delegate* unmanaged<byte*, UInt128*, UInt128*, int>)Stub.Value;
        fixed (UInt128* old = &expected) return function(target, old, &desired) != 0;
    }

    private static nint Build()
    {
        // rdi = target, rsi = &expected (receives the old value), rdx = &desired; returns 1 when stored.
        var a = new Assembler(64);
        a.push(rbx);
        a.mov(r8, rdx);
        a.mov(rax, __qword_ptr[rsi]);
        a.mov(rdx, __qword_ptr[rsi + 8]);
        a.mov(rbx, __qword_ptr[r8]);
        a.mov(rcx, __qword_ptr[r8 + 8]);
        a.@lock.cmpxchg16b(__xmmword_ptr[rdi]);
        a.mov(__qword_ptr[rsi], rax);
        a.mov(__qword_ptr[rsi + 8], rdx);
        a.setz(al);
        a.movzx(eax, al);
        a.pop(rbx);
        a.ret();
        var stream = new MemoryStream();
        void* page = mmap(null, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page == MAP_FAILED) throw new InvalidOperationException($"mmap for the cmpxchg16b stub failed: errno {errno}");
        a.Assemble(new StreamCodeWriter(stream), (ulong)page);
        stream.ToArray().CopyTo(new Span<byte>(page, 4096));
        if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0)
            throw new InvalidOperationException($"mprotect for the cmpxchg16b stub failed: errno {errno}");
        return (nint)page;
    }
}
