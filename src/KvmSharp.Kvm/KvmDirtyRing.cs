using System.Runtime.CompilerServices;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Kvm;

/// <summary>
/// One vCPU's dirty ring: an array of <see cref="kvm_dirty_gfn"/> shared with the kernel, mapped from
/// the vCPU fd at KVM_DIRTY_LOG_PAGE_OFFSET pages. The kernel publishes an entry by setting DIRTY
/// (release); userspace reads flags with acquire, takes slot and offset, then sets RESET (release)
/// and moves on; KVM_RESET_DIRTY_RINGS recycles the entries marked RESET. Entries are harvested in
/// order and none is skipped, as the kernel requires.
/// </summary>
public sealed unsafe class KvmDirtyRing : IDisposable
{
    private readonly object _gate = new();
    private readonly int _mask;
    private nint _entries;
    private uint _fetchIndex;

    private KvmDirtyRing(nint entries, int vcpuId, int bytes)
    {
        _entries = entries;
        VcpuId = vcpuId;
        Bytes = bytes;
        EntryCount = bytes / sizeof(kvm_dirty_gfn);
        _mask = EntryCount - 1;
    }

    internal static KvmDirtyRing Map(int vcpuFd, int vcpuId, int bytes)
    {
        long offset = (long)KvmDirtyRingLayout.KVM_DIRTY_LOG_PAGE_OFFSET * Environment.SystemPageSize;
        nint entries = Posix.MapShared(vcpuFd, (ulong)bytes, writable: true, what: "mmap(dirty ring)", offset: offset);
        return new KvmDirtyRing(entries, vcpuId, bytes);
    }

    public int VcpuId { get; }
    public int Bytes { get; }
    public int EntryCount { get; }

    /// <summary>Entries harvested from this ring so far.</summary>
    public long Harvested { get; private set; }

    /// <summary>
    /// Hand the published entries, in ring order, to <paramref name="sink"/> and mark each RESET.
    /// Returns how many were taken; the caller then issues KVM_RESET_DIRTY_RINGS. Safe from any thread
    /// (serialized per ring); allocation-free (the sink is a struct, so its call is inlined).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public int Harvest<TSink>(ref TSink sink) where TSink : struct, IDirtyGfnSink
    {
        lock (_gate)
        {
            if (_entries == 0) return 0;
            var ring = (kvm_dirty_gfn*)_entries;
            uint mask = (uint)_mask;
            uint fetch = _fetchIndex;
            int taken = 0;
            while (taken < EntryCount)
            {
                kvm_dirty_gfn* entry = ring + (fetch & mask);
                // Acquire: once DIRTY is seen, the kernel's slot and offset are visible.
                uint flags = Volatile.Read(ref entry->flags);
                if ((flags & KvmDirtyGfnFlags.KVM_DIRTY_GFN_F_DIRTY) == 0) break;
                sink.Add(entry->slot, entry->offset);
                // Release: the kernel may recycle the entry only after our reads above.
                Volatile.Write(ref entry->flags, KvmDirtyGfnFlags.KVM_DIRTY_GFN_F_RESET);
                fetch++;
                taken++;
            }
            _fetchIndex = fetch;
            Harvested += taken;
            return taken;
        }
    }

    public void Dispose()
    {
        lock (_gate)
        {
            Posix.Unmap(Interlocked.Exchange(ref _entries, 0), (ulong)Bytes);
        }
    }
}
