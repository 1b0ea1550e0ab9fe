using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Performs MMIO exits that land in guest RAM (tracked pages, pages being re-carved) before the MMIO
/// bus sees them, and reports tracked writes as the kernel's page track does: once per guest write
/// instruction per page, with all its bytes. KVM splits a wide store into 8-byte MMIO fragments; the
/// fragments are stored as they come and reported once KVM says the instruction is complete (see
/// <see cref="VcpuRunner.CompleteInstructionBeforeGuestRuns"/>), so no guest code can run between
/// fragments and nothing is guessed. On access-trapped pages (<see cref="TrackingMode.TrapAccesses"/>)
/// a read exit leaves RIP on the instruction: a read-modify-write decoded there is performed by
/// KvmSharp as a real atomic on guest memory and reported, and KVM's later write-back of the same
/// instruction is absorbed. Allocation-free on every path.
/// </summary>
public sealed unsafe class TrackedAccessInterceptor : IMmioInterceptor, IInstructionCompletion
{
    private const int MaxMergedBytes = 64;
    private readonly PageTracker _tracker;
    private readonly MemslotTable _memslots;
    private readonly VcpuState[] _vcpus;
    private long _atomicOperations, _nonAtomicFallbacks, _writeBackMismatches;

    public TrackedAccessInterceptor(PageTracker tracker, MemslotTable memslots, int vcpuCount)
    {
        _tracker = tracker;
        _memslots = memslots;
        _vcpus = new VcpuState[Math.Max(1, vcpuCount)];
        for (int i = 0; i < _vcpus.Length; i++) _vcpus[i] = new VcpuState();
    }

    /// <summary>Read-modify-writes on access-trapped pages that KvmSharp performed atomically.</summary>
    public long AtomicOperations => Interlocked.Read(ref _atomicOperations);

    /// <summary>Read-modify-writes on access-trapped pages that could not be done atomically (split across pages or fragments, or undecodable); KVM did them.</summary>
    public long NonAtomicFallbacks => Interlocked.Read(ref _nonAtomicFallbacks);

    /// <summary>KVM's write-back of an atomically performed instruction differed from KvmSharp's result (should stay 0).</summary>
    public long WriteBackMismatches => Interlocked.Read(ref _writeBackMismatches);

    private sealed class VcpuState
    {
        public readonly byte[] Merged = new byte[MaxMergedBytes];
        public ulong MergedGpa;
        public int MergedAddressSpace;
        public int MergedLength;
        public bool AtomicPending;
        public ulong AtomicGpa;
        public int AtomicWidth;
        public ulong AtomicValue;
        public readonly InstructionFetcher Fetcher = new();
    }

    public bool TryHandle(int vcpuId, int addressSpace, ulong gpa, Span<byte> data, bool isWrite)
    {
        if (!_tracker.TryFindTrappedPage(addressSpace, gpa, out var page)) return false;
        var state = (uint)vcpuId < (uint)_vcpus.Length ? _vcpus[vcpuId] : null;
        byte* host = (byte*)page.HostPage + (gpa & (TrappedPage.Size - 1));
        if (!isWrite)
        {
            if (page.AccessTrapped && state is not null && TryPerformAtomically(vcpuId, state, addressSpace, gpa, host, data, page)) return true;
            GuestMemoryAccess.Load(host, data);
            return true;
        }

        if (state is not null && state.AtomicPending)
        {
            state.AtomicPending = false;
            if (gpa == state.AtomicGpa && data.Length == state.AtomicWidth)
            {
                // KVM writing back the instruction KvmSharp already performed (and reported) at its read:
                // memory may hold a newer value from another vCPU by now, so nothing is stored.
                if (Little(data) != state.AtomicValue) Interlocked.Increment(ref _writeBackMismatches);
                RequestCompletion(vcpuId);
                return true;
            }
        }
        GuestMemoryAccess.Store(host, data);
        _tracker.MarkWritten(page);
        if (!page.Tracked) return true; // an untracked page inside a coarse carve: written, not reported
        if (state is null)
        {
            _tracker.ReportGuestWrite(vcpuId, gpa, data, addressSpace);
            return true;
        }
        if (state.MergedLength > 0 && (gpa != state.MergedGpa + (ulong)state.MergedLength || (gpa >> Memslot.PageShift) != (state.MergedGpa >> Memslot.PageShift) || state.MergedLength + data.Length > MaxMergedBytes))
            Flush(vcpuId, state);
        if (state.MergedLength == 0) (state.MergedGpa, state.MergedAddressSpace) = (gpa, addressSpace);
        data.CopyTo(state.Merged.AsSpan(state.MergedLength));
        state.MergedLength += data.Length;
        RequestCompletion(vcpuId);
        return true;
    }

    public void InstructionCompleted(int vcpuId)
    {
        var state = _vcpus[vcpuId];
        state.AtomicPending = false;
        Flush(vcpuId, state);
    }

    private void Flush(int vcpuId, VcpuState state)
    {
        if (state.MergedLength == 0) return;
        int length = state.MergedLength;
        state.MergedLength = 0;
        _tracker.ReportGuestWrite(vcpuId, state.MergedGpa, state.Merged.AsSpan(0, length), state.MergedAddressSpace);
    }

    private void RequestCompletion(int vcpuId)
    {
        if (VcpuRunner.Current is { } runner && runner.Id == vcpuId) runner.CompleteInstructionBeforeGuestRuns(this);
        else InstructionCompleted(vcpuId); // not on a vCPU thread: nothing more of this access will come
    }

    // A read exit on an access-trapped page: RIP is still on the instruction, so it is decoded forward
    // from there. A read-modify-write of exactly this access is done here, atomically, and reported;
    // KVM gets the old value, computes flags and registers from it and writes back the same result.
    private bool TryPerformAtomically(int vcpuId, VcpuState state, int addressSpace, ulong gpa, byte* host, Span<byte> data, in TrappedPage page)
    {
        if (VcpuRunner.Current is not { } runner || runner.Id != vcpuId || runner.Vcpu is not { } vcpu) return false;
        var regs = vcpu.GetRegisters();
        var sregs = vcpu.GetSpecialRegisters();
        if (!state.Fetcher.TryDecodeAtRip(vcpu, _memslots.Current, addressSpace, regs, sregs, out var instruction)) return false;
        if (!ReadModifyWrite.TryPrepare(instruction, regs, out var operation)) return false;
        if (operation.Width != data.Length || ((gpa & (TrappedPage.Size - 1)) + (ulong)operation.Width) > TrappedPage.Size)
        {
            Interlocked.Increment(ref _nonAtomicFallbacks);
            return false;
        }
        ulong old, value;
        bool reported;
        do
        {
            old = GuestMemoryAccess.LoadAtomic(host, operation.Width);
            (value, reported) = operation.Apply(old);
        }
        while (!GuestMemoryAccess.CompareExchange(host, operation.Width, old, value));
        Interlocked.Increment(ref _atomicOperations);
        for (int i = 0; i < data.Length; i++) data[i] = (byte)(old >> (8 * i));
        state.AtomicPending = true;
        state.AtomicGpa = gpa;
        state.AtomicWidth = operation.Width;
        state.AtomicValue = value;
        if (reported)
        {
            _tracker.MarkWritten(page);
            Span<byte> bytes = stackalloc byte[8];
            for (int i = 0; i < operation.Width; i++) bytes[i] = (byte)(value >> (8 * i));
            _tracker.ReportGuestWrite(vcpuId, gpa, bytes[..operation.Width], addressSpace);
        }
        RequestCompletion(vcpuId);
        return true;
    }

    private static ulong Little(ReadOnlySpan<byte> data)
    {
        ulong value = 0;
        for (int i = 0; i < data.Length && i < 8; i++) value |= (ulong)data[i] << (8 * i);
        return value;
    }
}
