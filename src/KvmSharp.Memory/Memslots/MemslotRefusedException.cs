using KvmSharp.Kvm;

namespace KvmSharp.Memory.Memslots;

/// <summary>A memslot request was refused, by KvmSharp's mirror of the kernel's rules or by the kernel itself.</summary>
public sealed class MemslotRefusedException(MemslotRequest request, int errno, string reason, bool refusedByKernel)
    : KvmException("KVM_SET_USER_MEMORY_REGION", errno, $"{reason} [{request}]")
{
    public MemslotRequest Request { get; } = request;
    public string Reason { get; } = reason;

    /// <summary>True when the model accepted the request and the kernel refused it anyway.</summary>
    public bool RefusedByKernel { get; } = refusedByKernel;
}
