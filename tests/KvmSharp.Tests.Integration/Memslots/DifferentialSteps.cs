using KvmSharp.Memory.Memslots;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>What one step of the memslot differential does.</summary>
public enum DiffOpKind
{
    /// <summary>A request built from the numbers alone: any id (small, near the limit, beyond it), address space, range, host address, flags.</summary>
    Request,

    /// <summary>A request about an existing slot: the same, flags toggled, moved (with or without new flags, next to another slot, to the top gfn), deleted, resized, re-pointed.</summary>
    Variant,
    AddGfn,
    RemoveGfn,
    Register,
    Unregister,

    /// <summary>A guest write as a trapped MMIO exit would deliver it.</summary>
    Write,

    /// <summary>The Nth kernel call of the next steps fails with an errno (production stack only): rollback paths.</summary>
    FailNext,

    /// <summary>Not generated: <see cref="DiffOp.Exact"/> verbatim (regression cases).</summary>
    ExactRequest,

    /// <summary>Not generated: AddGfn of gfn A (regression cases).</summary>
    ExactAddGfn,
}

/// <summary>One step of a differential sequence; its numbers are interpreted against the state when it runs.</summary>
public readonly record struct DiffOp(DiffOpKind Kind, int A, int B, int C, int D)
{
    public MemslotRequest Exact { get; init; }

    public static DiffOp Request(MemslotRequest request) => new(DiffOpKind.ExactRequest, 0, 0, 0, 0) { Exact = request };
    public static DiffOp AddGfn(ulong gfn) => new(DiffOpKind.ExactAddGfn, (int)gfn, 0, 0, 0);

    public override string ToString() => Kind switch
    {
        DiffOpKind.ExactRequest => $"Request({Exact})",
        DiffOpKind.ExactAddGfn => $"AddGfn(0x{A:x})",
        _ => $"{Kind}({A},{B},{C},{D})",
    };
}

/// <summary>A sequence: its steps, whether MOVE is allowed with notifiers, and whether it starts with every id but a few in use.</summary>
public sealed record DiffSequence(DiffOp[] Ops, bool AllowMoveWithNotifiers, int FillLeavingFree)
{
    public override string ToString() =>
        $"{Ops.Length} steps, AllowMoveWithNotifiers={AllowMoveWithNotifiers}, fill={(FillLeavingFree < 0 ? "no" : $"all ids but {FillLeavingFree}")}: {string.Join(" ", Ops)}";
}
