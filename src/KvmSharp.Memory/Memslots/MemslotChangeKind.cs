namespace KvmSharp.Memory.Memslots;

/// <summary>enum kvm_mr_change: derived from a request, never asked for.</summary>
public enum MemslotChangeKind
{
    /// <summary>The request matches the existing slot: nothing to do (the kernel returns 0).</summary>
    None,
    Create,
    Delete,
    Move,
    FlagsOnly,
}
