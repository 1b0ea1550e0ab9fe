using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>A guest RAM page a trapped access landed in: its user slot, host mapping, and whether (and how) it is tracked.</summary>
public readonly record struct TrappedPage(Memslot Slot, ulong Gfn, nint HostPage, bool Tracked, bool AccessTrapped)
{
    public const int Size = 1 << Memslot.PageShift;
}
