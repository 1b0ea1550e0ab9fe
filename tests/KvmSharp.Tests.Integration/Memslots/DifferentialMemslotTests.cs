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
/// verdict and errno from both, and the final slot sets must agree.
/// </summary>
public sealed class DifferentialMemslotTests(ITestOutputHelper output)
{
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
            int kernel = vm.TrySetUserMemoryRegion(request.ToKernel());
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
