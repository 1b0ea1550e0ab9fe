using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>A user memslot together with the host memory that backs it.</summary>
internal sealed record RamSlot(Memslot Slot, GuestMemoryRegion Memory)
{
    /// <summary>The backing bytes of [gpa, gpa + length), read straight from host memory.</summary>
    public byte[] Read(ulong gpa, int length) => Memory.AsSpan(gpa - Slot.GuestPhysAddr, length).ToArray();

    public void Fill(ulong gpa, ReadOnlySpan<byte> bytes) => Memory.Write(gpa - Slot.GuestPhysAddr, bytes);
}

/// <summary>
/// The page-tracking stack without /dev/kvm: MemslotTable → CarvedMemslotBackend → <see cref="RecordingKernel"/>,
/// a <see cref="PageTracker"/> over it with a <see cref="NoVcpuQuiescer"/>, and real anonymous host memory
/// behind every user slot.
/// </summary>
internal sealed class TrackingRig : IDisposable
{
    public const ulong Page = 4096;

    private readonly List<GuestMemoryRegion> _regions = [];
    private readonly List<string> _log = [];
    private readonly List<string> _stops = [];

    /// <param name="mode">How AddGfn traps: the layout tests were written for read-only carving; access-trapped layouts have their own tests.</param>
    public TrackingRig(MemslotLimits? limits = null, PageTrackOptions? options = null, TrackingMode mode = TrackingMode.TrapWrites)
    {
        options = (options ?? new PageTrackOptions()) with { DefaultMode = mode };
        Limits = limits ?? new MemslotLimits();
        Kernel = new RecordingKernel();
        Carved = new CarvedMemslotBackend(Kernel, Limits);
        Table = new MemslotTable(Limits, Carved);
        Quiescer = new NoVcpuQuiescer();
        Tracker = new PageTracker(Table, Carved, Quiescer, options)
        {
            Log = message => { lock (_log) _log.Add(message); },
            StopVm = message => { lock (_stops) _stops.Add(message); },
        };
    }

    public MemslotLimits Limits { get; }
    public RecordingKernel Kernel { get; }
    public CarvedMemslotBackend Carved { get; }
    public MemslotTable Table { get; }
    public NoVcpuQuiescer Quiescer { get; }
    public PageTracker Tracker { get; }

    public IReadOnlyList<string> LogLines
    {
        get { lock (_log) return _log.ToList(); }
    }

    public IReadOnlyList<string> StopRequests
    {
        get { lock (_stops) return _stops.ToList(); }
    }

    /// <summary>Create a user slot backed by fresh anonymous memory.</summary>
    public RamSlot AddSlot(ushort id, ulong gpa, ulong pages, uint flags = 0, ushort addressSpace = 0)
    {
        var memory = GuestMemoryRegion.CreateAnonymous(pages * Page, $"slot-{id}-as{addressSpace}");
        _regions.Add(memory);
        var verdict = Table.Apply(MemslotRequest.Create(id, gpa, pages * Page, memory.HostAddress, flags, addressSpace));
        return new RamSlot(verdict.New ?? throw new InvalidOperationException("a create publishes its slot"), memory);
    }

    /// <summary>What is wrong with the kernel view (KernelSlotLayout.Verify against the fake kernel's slots); empty when right.</summary>
    public List<string> LayoutProblems() => KernelSlotLayout.Verify(
        Table.Current.AllSlots(),
        slot => Tracker.TrackedGfns.TryGetValue(slot.PackedSlot, out var gfns) ? gfns : [],
        slot => Carved.PiecesOf(slot.Id, slot.AddressSpace),
        Kernel.Slots().Select(k => new KernelSlotPiece(k.Id, k.AddressSpace, k.Gpa, k.Size, k.Hva, k.Flags)),
        Carved.KernelSlotCount,
        Limits.SlotsPerAddressSpace,
        accessTrappedGfns: slot => Tracker.TrackedGfns.TryGetValue(slot.PackedSlot, out var gfns)
            ? gfns.Where(g => Tracker.ModeOf(g, slot.AddressSpace) == TrackingMode.TrapAccesses).ToList()
            : []);

    /// <summary>Fails with every problem of the kernel view.</summary>
    public void AssertLayout()
    {
        var problems = LayoutProblems();
        if (problems.Count > 0) throw new Xunit.Sdk.XunitException("kernel view is wrong:\n  " + string.Join("\n  ", problems));
    }

    /// <summary>A write as a vCPU's MMIO exit would report it.</summary>
    public bool Write(int vcpuId, ulong gpa, byte[] bytes, int addressSpace = 0) =>
        Tracker.HandleTrappedAccess(vcpuId, addressSpace, gpa, bytes.AsSpan(), isWrite: true);

    public void Dispose()
    {
        foreach (var region in _regions) region.Dispose();
    }
}
