using Iced.Intel;
using KvmSharp.Vmm.Vcpus;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// A real `lock cmpxchg16b` on host memory, for a guest's cmpxchg16b on a tracked page: .NET has no
/// 16-byte Interlocked, and the guest's other vCPUs (native readers on write-trapped pages included)
/// must never see a torn value. The stub is assembled with Iced once and mapped executable (never writable: <see cref="ExecutableStub"/>).
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
        a.Assemble(new StreamCodeWriter(stream), 0); // position-independent
        void* page = ExecutableStub.Map(stream.ToArray(), "cmpxchg16b");
        return (nint)page;
    }
}
