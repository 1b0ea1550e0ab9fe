namespace KvmSharp.Memory.Memslots;

/// <summary>
/// Watches memslot changes. <see cref="Prepare"/> runs before the kernel is asked and may veto;
/// <see cref="Committed"/> runs only once the kernel has accepted the change and the new snapshot
/// is published (the kernel's commit step; a refused change commits nothing).
/// </summary>
public interface IMemslotObserver
{
    /// <summary>0 to allow the change, or an errno (with a reason) to refuse it.</summary>
    int Prepare(in MemslotVerdict change, out string? reason);

    void Committed(in MemslotVerdict change, MemslotSnapshot published);
}
