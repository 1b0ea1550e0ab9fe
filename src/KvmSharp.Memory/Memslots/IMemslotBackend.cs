using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>Where accepted memslot changes go: the real VM, or a fake in unit tests.</summary>
public interface IMemslotBackend
{
    /// <summary>KVM_SET_USER_MEMORY_REGION; 0 or -errno.</summary>
    int SetUserMemoryRegion(in kvm_userspace_memory_region region);

    /// <summary>KVM_GET_DIRTY_LOG for a packed slot number into <paramref name="bitmap"/>; 0 or -errno.</summary>
    int GetDirtyLog(uint packedSlot, Span<ulong> bitmap);
}
