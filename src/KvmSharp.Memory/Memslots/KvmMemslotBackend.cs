using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>The memslot backend of a real VM.</summary>
public sealed class KvmMemslotBackend(KvmVm vm) : IMemslotBackend
{
    public int SetUserMemoryRegion(in kvm_userspace_memory_region region) => vm.TrySetUserMemoryRegion(region);

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap)
    {
        try
        {
            vm.GetDirtyLog(packedSlot, bitmap);
            return 0;
        }
        catch (KvmException e)
        {
            return -e.Errno;
        }
    }
}
