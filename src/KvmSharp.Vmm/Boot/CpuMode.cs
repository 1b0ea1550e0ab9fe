namespace KvmSharp.Vmm.Boot;

/// <summary>The mode a flat guest image starts in.</summary>
public enum CpuMode
{
    /// <summary>16-bit real mode, CS base 0: what a minimal C harness also runs, used by the benchmark.</summary>
    Real,

    /// <summary>64-bit long mode with the first 4 GiB identity-mapped (Firecracker-style direct entry).</summary>
    Long,
}
