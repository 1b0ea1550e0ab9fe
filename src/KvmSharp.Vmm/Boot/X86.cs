namespace KvmSharp.Vmm.Boot;

/// <summary>Architectural x86 constants used when setting up CPU modes.</summary>
public static class X86
{
    public const ulong CR0_PE = 1UL << 0;
    public const ulong CR0_MP = 1UL << 1;
    public const ulong CR0_ET = 1UL << 4;
    public const ulong CR0_NE = 1UL << 5;
    public const ulong CR0_WP = 1UL << 16;
    public const ulong CR0_AM = 1UL << 18;
    public const ulong CR0_PG = 1UL << 31;

    public const ulong CR4_PAE = 1UL << 5;
    public const ulong CR4_OSFXSR = 1UL << 9;
    public const ulong CR4_OSXMMEXCPT = 1UL << 10;

    public const ulong EFER_SCE = 1UL << 0;
    public const ulong EFER_LME = 1UL << 8;
    public const ulong EFER_LMA = 1UL << 10;

    public const ulong PTE_PRESENT = 1UL << 0;
    public const ulong PTE_WRITE = 1UL << 1;
    public const ulong PTE_USER = 1UL << 2;
    public const ulong PTE_LARGE = 1UL << 7;

    public const ulong RFLAGS_RESERVED = 1UL << 1;
}
