using System.Collections.Immutable;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Memory.Memslots;

/// <summary>
/// The managed model of a VM's memslots. Every request is checked with the kernel's rules first;
/// an accepted one goes to the kernel, and only once the kernel agrees is a new snapshot published.
/// Any refusal leaves the model and the kernel as they were. Writers serialize on a lock;
/// readers use <see cref="Current"/> and never block.
/// </summary>
public sealed class MemslotTable
{
    private readonly object _writeLock = new();
    private readonly IMemslotBackend _backend;
    private MemslotSnapshot _current;
    private ImmutableArray<IMemslotObserver> _observers = ImmutableArray<IMemslotObserver>.Empty;

    public MemslotTable(MemslotLimits limits, IMemslotBackend backend)
    {
        Limits = limits;
        _backend = backend;
        _current = MemslotSnapshot.Empty(limits.AddressSpaces);
    }

    public MemslotLimits Limits { get; }

    /// <summary>Serializes every writer of the memory layout: memslot changes and page-tracking changes.</summary>
    internal object WriteLock => _writeLock;

    /// <summary>The published snapshot; safe to read from any thread without a lock.</summary>
    public MemslotSnapshot Current => Volatile.Read(ref _current);

    public void AddObserver(IMemslotObserver observer)
    {
        lock (_writeLock) _observers = _observers.Add(observer);
    }

    public void RemoveObserver(IMemslotObserver observer)
    {
        lock (_writeLock) _observers = _observers.Remove(observer);
    }

    /// <summary>What the request would do, without doing it.</summary>
    public MemslotVerdict Check(in MemslotRequest request) => MemslotRules.Check(Current, Limits, request);

    /// <summary>Apply a request; throws <see cref="MemslotRefusedException"/> with the kernel's errno on refusal.</summary>
    public MemslotVerdict Apply(in MemslotRequest request)
    {
        var verdict = TryApply(request);
        if (!verdict.Accepted)
            throw new MemslotRefusedException(request, verdict.Errno, verdict.Reason ?? "refused", verdict.RefusedByKernel);
        return verdict;
    }

    /// <summary>Apply a request; on refusal returns the verdict with its errno and reason, and nothing changed.</summary>
    public MemslotVerdict TryApply(in MemslotRequest request)
    {
        lock (_writeLock)
        {
            var current = _current;
            var verdict = MemslotRules.Check(current, Limits, request);
            if (!verdict.Accepted || verdict.Kind == MemslotChangeKind.None) return verdict;

            foreach (var observer in _observers)
            {
                int errno = observer.Prepare(verdict, out string? reason);
                if (errno != 0) return verdict with { Errno = errno, Reason = reason ?? $"refused by {observer.GetType().Name}" };
            }

            int result = _backend.SetUserMemoryRegion(request.ToKernel());
            if (result < 0)
                return verdict with { Errno = -result, Reason = $"the kernel refused the {verdict.Kind} ({Errno.Name(-result)}) though KvmSharp's rules allowed it", RefusedByKernel = true };

            var published = current.With(verdict.Old, verdict.New);
            Volatile.Write(ref _current, published);
            foreach (var observer in _observers) observer.Committed(verdict, published);
            return verdict;
        }
    }

    /// <summary>KVM_GET_DIRTY_LOG for a slot with KVM_MEM_LOG_DIRTY_PAGES: one bit per page, cleared by the read.</summary>
    public ulong[] GetDirtyLog(ushort id, ushort addressSpace = 0)
    {
        var request = new MemslotRequest(MemslotRequest.Pack(id, addressSpace), 0, 0, 0, 0);
        if (addressSpace >= Limits.AddressSpaces || id >= Limits.SlotsPerAddressSpace)
            throw new MemslotRefusedException(request, Errno.EINVAL, $"slot {id} in address space {addressSpace} is out of range", false);
        if (Current.FindById(addressSpace, id) is not { } slot || (slot.Flags & KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES) == 0)
            throw new MemslotRefusedException(request, Errno.ENOENT, $"slot {id} does not exist or does not log dirty pages", false);
        var bitmap = new ulong[(slot.PageCount + 63) / 64];
        int result;
        lock (_writeLock) result = _backend.GetDirtyLog(slot.PackedSlot, bitmap);
        if (result < 0) throw new Kvm.KvmException("KVM_GET_DIRTY_LOG", -result, $"slot {id}");
        return bitmap;
    }
}
