namespace KvmSharp.Kvm.Interop;

/// <summary>The _IO/_IOR/_IOW/_IOWR encoding of asm-generic/ioctl.h, so numbers derive from struct sizes.</summary>
internal static class IoctlNumber
{
    private const int NrShift = 0, TypeShift = 8, SizeShift = 16, DirShift = 30;
    private const uint None = 0, Write = 1, Read = 2;

    public static uint IO(uint type, uint nr) => Encode(None, type, nr, 0);
    public static uint IOR(uint type, uint nr, int size) => Encode(Read, type, nr, size);
    public static uint IOW(uint type, uint nr, int size) => Encode(Write, type, nr, size);
    public static uint IOWR(uint type, uint nr, int size) => Encode(Read | Write, type, nr, size);

    private static uint Encode(uint dir, uint type, uint nr, int size) =>
        (dir << DirShift) | ((uint)size << SizeShift) | (type << TypeShift) | (nr << NrShift);
}
