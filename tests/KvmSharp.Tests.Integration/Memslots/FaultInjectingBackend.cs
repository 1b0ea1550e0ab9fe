using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>
/// Makes the Nth KVM_SET_USER_MEMORY_REGION from now fail with a chosen errno without reaching the
/// kernel, so the rollback paths of the carving run against a real kernel.
/// </summary>
public sealed class FaultInjectingBackend(IMemslotBackend kernel) : IMemslotBackend
{
    private int _countdown;
    private int _errno;

    /// <summary>Set when an armed failure was returned; the caller clears it.</summary>
    public bool Fired { get; set; }

    public void Arm(int nthCall, int errno) => (_countdown, _errno) = (nthCall, errno);

    public void Disarm() => _countdown = 0;

    public int SetUserMemoryRegion(in kvm_userspace_memory_region region)
    {
        if (_countdown > 0 && --_countdown == 0)
        {
            Fired = true;
            return -_errno;
        }
        return kernel.SetUserMemoryRegion(region);
    }

    public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap) => kernel.GetDirtyLog(packedSlot, bitmap);
}
