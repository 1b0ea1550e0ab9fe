using System.Runtime.Intrinsics.X86;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Where vector registers live in the standard-format XSAVE area KVM_GET_XSAVE returns: the legacy
/// region holds xmm0-15 at 160, the header's XSTATE_BV at 512 says which components hold real state
/// (a clear bit means the component is in its initial state, all zeros), and the offsets of AVX
/// (ymm upper halves), the opmask registers and the AVX-512 parts come from CPUID leaf 0xD, as the
/// architecture defines them for the standard format.
/// </summary>
internal static unsafe class XsaveLayout
{
    public const int LegacyXmm = 160, XstateBv = 512;
    public const int Sse = 1, Avx = 2, Opmask = 5, ZmmHi256 = 6, Hi16Zmm = 7;

    /// <summary>Byte offset of each component (0 when the host CPU lacks it).</summary>
    public static readonly int[] Offsets = ReadOffsets();

    public static bool HasAvx512 => Offsets[ZmmHi256] != 0 && Offsets[Hi16Zmm] != 0 && Offsets[Opmask] != 0;

    private static int[] ReadOffsets()
    {
        var offsets = new int[8];
        if (!X86Base.IsSupported) return offsets;
        if ((X86Base.CpuId(1, 0).Ecx & (1 << 26)) == 0) return offsets; // no XSAVE
        for (int component = Avx; component < offsets.Length; component++)
        {
            var (size, offset, _, _) = X86Base.CpuId(0xD, component);
            if (size != 0 && offset + size <= sizeof(kvm_xsave)) offsets[component] = offset;
        }
        return offsets;
    }

    private static bool Present(byte* area, int component) => (*(ulong*)(area + XstateBv) & (1UL << component)) != 0;

    /// <summary>Copy the low <paramref name="value"/>.Length bytes (16, 32 or 64) of vector register <paramref name="index"/>.</summary>
    public static bool TryRead(kvm_xsave* xsave, int index, Span<byte> value)
    {
        byte* area = (byte*)xsave;
        for (int part = 0; part * 16 < value.Length; part++)
        {
            var chunk = value.Slice(part * 16, Math.Min(16, value.Length - part * 16));
            if (!TryLocate(index, part, out int component, out int offset)) return false;
            if (Present(area, component)) new ReadOnlySpan<byte>(area + offset, chunk.Length).CopyTo(chunk);
            else chunk.Clear();
        }
        return true;
    }

    /// <summary>Write the low bytes of vector register <paramref name="index"/>, zeroing the 16-byte parts from value.Length up to <paramref name="zeroUpTo"/>.</summary>
    public static bool TryWrite(kvm_xsave* xsave, int index, ReadOnlySpan<byte> value, int zeroUpTo)
    {
        byte* area = (byte*)xsave;
        int end = Math.Max(value.Length, zeroUpTo);
        for (int part = 0; part * 16 < end; part++)
        {
            if (!TryLocate(index, part, out int component, out int offset))
            {
                if (part * 16 >= value.Length) break; // nothing to zero on a CPU without those parts
                return false;
            }
            var target = new Span<byte>(area + offset, 16);
            if (!Present(area, component))
            {
                // The component was in its initial state: make it real, all its other bytes zero.
                ClearComponent(area, component);
                *(ulong*)(area + XstateBv) |= 1UL << component;
            }
            if (part * 16 < value.Length) value.Slice(part * 16, 16).CopyTo(target);
            else target.Clear();
        }
        return true;
    }

    public static ulong ReadOpmask(kvm_xsave* xsave, int k)
    {
        byte* area = (byte*)xsave;
        if (Offsets[Opmask] == 0 || !Present(area, Opmask)) return 0;
        return *(ulong*)(area + Offsets[Opmask] + 8 * k);
    }

    private static void ClearComponent(byte* area, int component)
    {
        switch (component)
        {
            case Sse:
                new Span<byte>(area + LegacyXmm, 16 * 16).Clear();
                break;
            case Avx:
                new Span<byte>(area + Offsets[Avx], 16 * 16).Clear();
                break;
            case ZmmHi256:
                new Span<byte>(area + Offsets[ZmmHi256], 16 * 32).Clear();
                break;
            case Hi16Zmm:
                new Span<byte>(area + Offsets[Hi16Zmm], 16 * 64).Clear();
                break;
        }
    }

    // 16-byte part 0-3 of vector register 0-31: its component and byte offset.
    private static bool TryLocate(int index, int part, out int component, out int offset)
    {
        component = 0;
        offset = 0;
        if (index < 16)
        {
            (component, offset) = part switch
            {
                0 => (Sse, LegacyXmm + 16 * index),
                1 => (Avx, Offsets[Avx] + 16 * index),
                _ => (ZmmHi256, Offsets[ZmmHi256] + 32 * index + 16 * (part - 2)),
            };
        }
        else
        {
            (component, offset) = (Hi16Zmm, Offsets[Hi16Zmm] + 64 * (index - 16) + 16 * part);
        }
        return component == Sse || Offsets[component] != 0;
    }
}
