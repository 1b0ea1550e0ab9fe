using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;

namespace KvmSharp.Memory.PageTracking;

/// <summary>
/// How a user memslot is cut into kernel memslots: maximal runs of untracked pages keep the slot's
/// flags, maximal runs of tracked pages become read-only (adjacent tracked gfns share one piece).
/// Pure: ids are assigned later, the first piece always takes the user's own id.
/// </summary>
public static class KernelSlotLayout
{
    public static List<KernelSlotPiece> Compute(Memslot slot, IEnumerable<ulong> trackedGfns)
    {
        var pieces = new List<KernelSlotPiece>();
        bool userReadOnly = (slot.Flags & KvmMemFlags.KVM_MEM_READONLY) != 0;
        ulong cursor = slot.BaseGfn;
        ulong runStart = 0, runEnd = 0;
        bool inRun = false;
        foreach (ulong gfn in trackedGfns.Where(slot.ContainsGfn).Distinct().Order())
        {
            if (inRun && gfn == runEnd)
            {
                runEnd++;
                continue;
            }
            if (inRun) EmitRun();
            runStart = gfn;
            runEnd = gfn + 1;
            inRun = true;
        }
        if (inRun) EmitRun();
        Add(cursor, slot.EndGfn, tracked: false);
        return pieces;

        void EmitRun()
        {
            Add(cursor, runStart, tracked: false);
            Add(runStart, runEnd, tracked: true);
            cursor = runEnd;
        }

        void Add(ulong fromGfn, ulong toGfn, bool tracked)
        {
            if (toGfn <= fromGfn) return;
            ulong offset = (fromGfn - slot.BaseGfn) << Memslot.PageShift;
            uint flags = tracked || userReadOnly ? slot.Flags | KvmMemFlags.KVM_MEM_READONLY : slot.Flags;
            ushort id = pieces.Count == 0 ? slot.Id : (ushort)0;
            pieces.Add(new KernelSlotPiece(id, slot.AddressSpace, slot.GuestPhysAddr + offset, (toGfn - fromGfn) << Memslot.PageShift, slot.HostAddress + offset, flags));
        }
    }
}
