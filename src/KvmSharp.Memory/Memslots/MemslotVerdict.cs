namespace KvmSharp.Memory.Memslots;

/// <summary>What the rules say about a request: the change it means, or the errno it gets and why.</summary>
public readonly record struct MemslotVerdict(MemslotChangeKind Kind, int Errno, string? Reason, Memslot? Old, Memslot? New)
{
    /// <summary>True when KvmSharp's rules allowed the request and the kernel refused it.</summary>
    public bool RefusedByKernel { get; init; }

    public bool Accepted => Errno == 0;

    public static MemslotVerdict Refuse(int errno, string reason) => new(MemslotChangeKind.None, errno, reason, null, null);
}
