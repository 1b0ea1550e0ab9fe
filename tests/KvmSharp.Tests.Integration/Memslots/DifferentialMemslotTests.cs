using System.Diagnostics;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;
using Xunit.Abstractions;

namespace KvmSharp.Tests.Integration.Memslots;

/// <summary>
/// Random sequences of KVM_SET_USER_MEMORY_REGION requests go both to KvmSharp's model (which
/// applies only what its rules accept) and straight to a real VM: every request must get the same
/// verdict and errno from both, and the final slot sets must agree. Then the whole production stack
/// (carving, tracking, injected kernel refusals) against the kernel, step by step, with the kernel
/// view checked after every step (<see cref="MemslotDifferential"/>), and the regression cases.
/// </summary>
public sealed class DifferentialMemslotTests(ITestOutputHelper output)
{
    /// <summary>Steps of the production differential; KVMSHARP_DIFFERENTIAL_STEPS raises (or lowers) it.</summary>
    private static long DifferentialSteps =>
        long.TryParse(Environment.GetEnvironmentVariable("KVMSHARP_DIFFERENTIAL_STEPS"), out long steps) && steps > 0 ? steps : 100_000;

    [KvmFact]
    public void The_production_stack_matches_the_kernel_after_every_step()
    {
        using var system = KvmSystem.Open();
        using var differential = new MemslotDifferential(system);
        var clock = Stopwatch.StartNew();

        differential.Run(DifferentialSteps, maxLength: 120, fillOneIn: 0, log: output.WriteLine, seed: Environment.GetEnvironmentVariable("KVMSHARP_DIFFERENTIAL_SEED"));

        output.WriteLine($"{differential.Summary()}; {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(differential.Steps >= DifferentialSteps);
        // The sequences exercise every kind of change, both refusals, injected refusals, tracking and coarsening.
        foreach (string kind in new[] { "Create", "Delete", "Move", "FlagsOnly", "EINVAL", "EEXIST", "injected-refusal", "AddGfn-ok", "RemoveGfn-ok", "write-tracked", "write-untracked" })
            Assert.True(differential.Verdicts.GetValueOrDefault(kind) > 0, $"the differential never produced {kind}: {differential.Summary()}");
    }

    /// <summary>
    /// Sequences that start with every id but a few taken (32,764 on this host), so carving must
    /// coarsen to give the user every id the kernel would: the same checks after every step.
    /// </summary>
    [KvmFact]
    public void Near_the_id_limit_carving_coarsens_and_still_matches_the_kernel_after_every_step()
    {
        using var system = KvmSystem.Open();
        using var differential = new MemslotDifferential(system);
        var clock = Stopwatch.StartNew();

        differential.Run(minimumSteps: 60, maxLength: 120, fillOneIn: 1, log: output.WriteLine);

        output.WriteLine($"{differential.Summary()}; {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(differential.Coarsenings > 0, $"no step ran with a coarsened carving: {differential.Summary()}");
        Assert.True(differential.Verdicts.GetValueOrDefault("Create") > 0, differential.Summary());
    }

    /// <summary>Issue 13, first report: an untracked slot moved with logging turned on in the same request, then a gfn tracked.</summary>
    [KvmFact]
    public void Regression_a_move_that_turns_logging_on_keeps_it_through_a_later_carve() => RunExactly(
        DiffOp.Request(MemslotRequest.Create(4, 0x1000, 0x2000, 0)),
        DiffOp.Request(MemslotRequest.Create(4, 0, 0x2000, 0, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES)),
        DiffOp.AddGfn(1));

    /// <summary>Issue 13, second report: a carved slot moved with logging turned on (no notifier registered).</summary>
    [KvmFact]
    public void Regression_a_carved_slot_moved_with_logging_turned_on_logs_in_the_kernel() => RunExactly(
        DiffOp.Request(MemslotRequest.Create(4, 0x1000, 0x2000, 0)),
        DiffOp.AddGfn(1),
        DiffOp.Request(MemslotRequest.Create(4, 0x10000, 0x2000, 0, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES)));

    private static void RunExactly(params DiffOp[] ops)
    {
        using var system = KvmSystem.Open();
        using var differential = new MemslotDifferential(system);

        differential.RunSequence(new DiffSequence(ops, AllowMoveWithNotifiers: false, FillLeavingFree: -1));

        Assert.Equal(ops.Length, differential.Steps);
    }

    /// <summary>A backend that accepts everything: the model evolves on its own verdicts only.</summary>
    private sealed class AcceptingBackend : IMemslotBackend
    {
        public int SetUserMemoryRegion(in kvm_userspace_memory_region region) => 0;
        public int GetDirtyLog(uint packedSlot, Span<ulong> bitmap) => 0;
    }

    [KvmTheory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void Model_and_kernel_give_the_same_verdict_for_every_request(int seed)
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var limits = MemslotLimitsProbe.Read(vm);
        var model = new MemslotTable(limits, new AcceptingBackend());
        using var backing = GuestMemoryRegion.CreateAnonymous(16 * 4096, "backing");
        var random = new Random(seed);
        var verdicts = new Dictionary<string, int>();

        for (int step = 0; step < 1500; step++)
        {
            var request = random.Next(3) == 0 && model.Current.Count(0) > 0
                ? VariantOfExistingSlot(random, model.Current)
                : RandomRequest(random, backing.HostAddress, limits);
            var verdict = model.TryApply(request);
            int kernel = vm.TrySetUserMemoryRegion1(request.ToKernel());
            int kernelErrno = kernel < 0 ? -kernel : 0;
            Assert.True(verdict.Errno == kernelErrno,
                $"seed {seed} step {step}: {request}: model says {Errno.Name(verdict.Errno)} ({verdict.Kind}, {verdict.Reason}), kernel says {Errno.Name(kernelErrno)}");
            string key = verdict.Errno == 0 ? verdict.Kind.ToString() : Errno.Name(verdict.Errno);
            verdicts[key] = verdicts.GetValueOrDefault(key) + 1;
        }

        output.WriteLine($"seed {seed}: {string.Join(", ", verdicts.OrderBy(p => p.Key).Select(p => $"{p.Key}={p.Value}"))}");
        // The sequences must exercise every kind of change and both kinds of refusal.
        foreach (string kind in new[] { "Create", "Delete", "Move", "FlagsOnly", "None", "EINVAL", "EEXIST" })
            Assert.True(verdicts.ContainsKey(kind), $"seed {seed} never produced {kind}");

        // Final state: every slot the model holds, the kernel holds too (re-creating it must be a no-op,
        // which the kernel signals by accepting a request identical to the existing slot).
        foreach (var slot in model.Current.AllSlots())
        {
            var same = new MemslotRequest(slot.PackedSlot, slot.Flags, slot.GuestPhysAddr, slot.Size, slot.HostAddress);
            Assert.Equal(0, vm.TrySetUserMemoryRegion(same.ToKernel()));
            var resized = same with { MemorySize = slot.Size + 4096 };
            Assert.Equal(-Errno.EINVAL, vm.TrySetUserMemoryRegion(resized.ToKernel()));
        }
    }

    // Requests about a slot that exists: the same (no-op), dirty logging toggled, moved, resized, re-pointed.
    private static MemslotRequest VariantOfExistingSlot(Random random, MemslotSnapshot current)
    {
        var slots = current.Slots(0).ToList();
        var slot = slots[random.Next(slots.Count)];
        var same = new MemslotRequest(slot.PackedSlot, slot.Flags, slot.GuestPhysAddr, slot.Size, slot.HostAddress);
        return random.Next(6) switch
        {
            0 => same,
            1 or 2 => same with { Flags = slot.Flags ^ KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES },
            3 => same with { GuestPhysAddr = (ulong)random.Next(24) * 4096 },
            4 => same with { MemorySize = slot.Size + 4096 },
            _ => same with { Flags = slot.Flags ^ KvmMemFlags.KVM_MEM_READONLY },
        };
    }

    private static MemslotRequest RandomRequest(Random random, ulong hostBase, MemslotLimits limits)
    {
        ushort id = random.Next(20) == 0 ? (ushort)(limits.SlotsPerAddressSpace + random.Next(3)) : (ushort)random.Next(6);
        ushort addressSpace = random.Next(25) == 0 ? (ushort)(1 + random.Next(2)) : (ushort)0;
        ulong gpa = random.Next(30) switch
        {
            0 => (ulong)random.Next(1, 4096),
            1 => ulong.MaxValue - 4095,
            2 => (limits.MaxGfn + 1 - (ulong)random.Next(0, 3)) << 12,
            _ => (ulong)random.Next(24) * 4096,
        };
        ulong size = random.Next(12) switch
        {
            0 => 0,
            1 => (ulong)random.Next(1, 4096),
            _ => (ulong)random.Next(1, 5) * 4096,
        };
        ulong hva = random.Next(30) switch
        {
            0 => hostBase + 1,
            1 => limits.UserAddressLimit - 4096,
            _ => hostBase + (ulong)random.Next(3) * 4096,
        };
        uint flags = random.Next(10) switch
        {
            0 => 1u << random.Next(2, 32),
            1 or 2 => KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES,
            3 => KvmMemFlags.KVM_MEM_READONLY,
            _ => 0,
        };
        return new MemslotRequest(MemslotRequest.Pack(id, addressSpace), flags, gpa, size, hva);
    }
}
