using System.Runtime.CompilerServices;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// Loads and stores of 1, 2, 4 or 8 bytes as single instructions, so an emulated guest access is as
/// atomic as the guest's own (an aligned qword is never torn); other sizes are copied.
/// </summary>
public static unsafe class GuestMemoryAccess
{
    public static void Load(byte* host, Span<byte> data)
    {
        switch (data.Length)
        {
            case 1: data[0] = Volatile.Read(ref *host); break;
            case 2: Unsafe.WriteUnaligned(ref data[0], Volatile.Read(ref *(ushort*)host)); break;
            case 4: Unsafe.WriteUnaligned(ref data[0], Volatile.Read(ref *(uint*)host)); break;
            case 8: Unsafe.WriteUnaligned(ref data[0], Volatile.Read(ref *(ulong*)host)); break;
            default: new ReadOnlySpan<byte>(host, data.Length).CopyTo(data); break;
        }
    }

    public static void Store(byte* host, ReadOnlySpan<byte> data)
    {
        switch (data.Length)
        {
            case 1: Volatile.Write(ref *host, data[0]); break;
            case 2: Volatile.Write(ref *(ushort*)host, Unsafe.ReadUnaligned<ushort>(ref Unsafe.AsRef(in data[0]))); break;
            case 4: Volatile.Write(ref *(uint*)host, Unsafe.ReadUnaligned<uint>(ref Unsafe.AsRef(in data[0]))); break;
            case 8: Volatile.Write(ref *(ulong*)host, Unsafe.ReadUnaligned<ulong>(ref Unsafe.AsRef(in data[0]))); break;
            default: data.CopyTo(new Span<byte>(host, data.Length)); break;
        }
    }

    public static bool Matches(byte* host, ReadOnlySpan<byte> data) => new ReadOnlySpan<byte>(host, data.Length).SequenceEqual(data);

    /// <summary>An atomic load of 1, 2, 4 or 8 bytes, zero-extended.</summary>
    public static ulong LoadAtomic(byte* host, int width) => width switch
    {
        1 => Volatile.Read(ref *host),
        2 => Volatile.Read(ref *(ushort*)host),
        4 => Volatile.Read(ref *(uint*)host),
        _ => Volatile.Read(ref *(ulong*)host),
    };

    /// <summary>A locked compare-exchange of 1, 2, 4 or 8 bytes on guest memory (the guest's own lock cmpxchg); true when it stored.</summary>
    public static bool CompareExchange(byte* host, int width, ulong expected, ulong value) => width switch
    {
        1 => Interlocked.CompareExchange(ref *host, (byte)value, (byte)expected) == (byte)expected,
        2 => Interlocked.CompareExchange(ref *(ushort*)host, (ushort)value, (ushort)expected) == (ushort)expected,
        4 => Interlocked.CompareExchange(ref *(uint*)host, (uint)value, (uint)expected) == (uint)expected,
        _ => Interlocked.CompareExchange(ref *(ulong*)host, value, expected) == expected,
    };
}
