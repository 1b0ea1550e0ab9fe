using KvmSharp.Devices.Memory;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.DirtyLog;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;

namespace KvmSharp.Vmm.Memory;

/// <summary>
/// Guest RAM of one address space as devices see it (<see cref="IGuestMemory"/>), over the memslot
/// table's lock-free snapshots: an access may span slots that are contiguous in guest-physical space,
/// and is checked as a whole against one snapshot before a byte moves, so a range that leaves guest
/// RAM (or, for a write, enters a read-only slot) fails with nothing done.
/// <para>
/// The kernel never sees a device's write (it goes straight to the host mapping, not through a
/// vCPU), so it sets no dirty bit and reaches no page-track notifier. This class does both itself:
/// every write is marked in the <see cref="DirtyPageLog"/> (merged into the next harvest in every
/// dirty-log mode), and the part of a write on a write-tracked gfn is reported to the notifiers
/// after it landed, with <see cref="PageTracker.DeviceWriter"/> as the writer. However the kernel
/// maps a tracked gfn (a read-only piece, or none), its host memory stays writable, so no carve is needed.
/// </para>
/// </summary>
public sealed unsafe class DeviceGuestMemory(MemslotTable memslots, DirtyPageLog dirtyLog, PageTracker? pageTracker, int addressSpace = 0) : IGuestMemory
{
    public int AddressSpace { get; } = addressSpace;

    public bool TryRead(GuestAddress address, Span<byte> destination)
    {
        var snapshot = memslots.Current;
        if (!Covers(snapshot, address.Value, (ulong)destination.Length, forWrite: false)) return false;
        ulong gpa = address.Value;
        while (!destination.IsEmpty)
        {
            snapshot.TryFindByGfn(AddressSpace, gpa >> Memslot.PageShift, out var slot);
            int chunk = Chunk(slot, gpa, destination.Length);
            new ReadOnlySpan<byte>((void*)slot.HostAddressOf(gpa), chunk).CopyTo(destination);
            destination = destination[chunk..];
            gpa += (ulong)chunk;
        }
        return true;
    }

    public bool TryWrite(GuestAddress address, ReadOnlySpan<byte> source)
    {
        var snapshot = memslots.Current;
        if (!Covers(snapshot, address.Value, (ulong)source.Length, forWrite: true)) return false;
        if (source.IsEmpty) return true;
        ulong gpa = address.Value;
        var remaining = source;
        while (!remaining.IsEmpty)
        {
            snapshot.TryFindByGfn(AddressSpace, gpa >> Memslot.PageShift, out var slot);
            int chunk = Chunk(slot, gpa, remaining.Length);
            remaining[..chunk].CopyTo(new Span<byte>((void*)slot.HostAddressOf(gpa), chunk));
            remaining = remaining[chunk..];
            gpa += (ulong)chunk;
        }
        dirtyLog.MarkDirty(address.Value, (ulong)source.Length, AddressSpace);
        pageTracker?.ReportDeviceWrite(AddressSpace, address.Value, source);
        return true;
    }

    public bool TryGetHostAddress(GuestAddress address, ulong length, bool forWrite, out nint hostAddress)
    {
        hostAddress = 0;
        ulong gpa = address.Value;
        if (length == 0 || gpa + (length - 1) < gpa) return false;
        if (!memslots.Current.TryFindByGfn(AddressSpace, gpa >> Memslot.PageShift, out var slot)) return false;
        if (gpa + (length - 1) > slot.GuestPhysAddr + (slot.Size - 1)) return false; // not one contiguous host piece
        if (forWrite)
        {
            if ((slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0) return false;
            // A tracked page needs its write reported with the bytes: the caller copies through TryWrite.
            if (pageTracker?.TracksAny(slot, gpa >> Memslot.PageShift, (gpa + (length - 1)) >> Memslot.PageShift) == true) return false;
        }
        hostAddress = (nint)slot.HostAddressOf(gpa);
        return true;
    }

    public void CommitWrite(GuestAddress address, ulong length) => dirtyLog.MarkDirty(address.Value, length, AddressSpace);

    // Every byte of [gpa, gpa + length) in some slot of this address space (writable ones, for a write).
    private bool Covers(MemslotSnapshot snapshot, ulong gpa, ulong length, bool forWrite)
    {
        if (length == 0) return true;
        if (gpa + (length - 1) < gpa) return false;
        ulong end = gpa + (length - 1);
        while (true)
        {
            if (!snapshot.TryFindByGfn(AddressSpace, gpa >> Memslot.PageShift, out var slot)) return false;
            if (forWrite && (slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0) return false;
            ulong slotLast = slot.GuestPhysAddr + (slot.Size - 1);
            if (end <= slotLast) return true;
            gpa = slotLast + 1;
        }
    }

    private static int Chunk(in Memslot slot, ulong gpa, int wanted) =>
        (int)Math.Min((ulong)wanted, slot.GuestPhysAddr + slot.Size - gpa);
}
