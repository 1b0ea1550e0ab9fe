using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.PageTracking;
using KvmSharp.Memory.Regions;

namespace KvmSharp.Benchmarks;

/// <summary>
/// `kvmsharp-bench smm-check`: the SMM memslot checks of the integration tests (SmmAddressSpaceTests)
/// as a quick program, for the nested testbed where the test host starts too slowly under TCG.
/// Prints one line per check and exits 1 on any failure.
/// </summary>
public static class SmmCheck
{
    public static int Run()
    {
        int failures = 0;
        void Check(string name, bool ok, string detail = "")
        {
            Console.WriteLine($"{(ok ? "ok" : "FAILED")}: {name}{(detail.Length > 0 ? $" ({detail})" : "")}");
            if (!ok) failures++;
        }

        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        var limits = MemslotLimitsProbe.Read(vm);
        Check("KVM_CAP_X86_SMM", limits.SmmSupported);
        Check("two memslot address spaces", limits.AddressSpaces == 2, $"KVM_CAP_MULTI_ADDRESS_SPACE={limits.AddressSpaces}");
        if (failures > 0) return 1;

        var carved = new CarvedMemslotBackend(new KvmMemslotBackend(vm), limits);
        var table = new MemslotTable(limits, carved);
        var tracker = new PageTracker(table, carved, new NoVcpuQuiescer(), new PageTrackOptions { DefaultMode = TrackingMode.TrapWrites }); // checks read-only carves
        using var ram = GuestMemoryRegion.CreateAnonymous(0x10000, "ram");
        using var smram = GuestMemoryRegion.CreateAnonymous(0x10000, "smram");
        table.Apply(MemslotRequest.Create(0, 0x30000, 0x10000, ram.HostAddress));
        var smm = table.TryApply(MemslotRequest.Create(0, 0x30000, 0x10000, smram.HostAddress, addressSpace: 1));
        Check("as_id 1 slot over an as_id 0 slot is created", smm.Accepted && smm.Kind == MemslotChangeKind.Create, smm.Reason ?? "");
        var overlap = table.TryApply(MemslotRequest.Create(1, 0x38000, 0x1000, smram.HostAddress, addressSpace: 1));
        Check("overlap inside as_id 1 is EEXIST", overlap.Errno == Errno.EEXIST, Errno.Name(overlap.Errno));
        var kernelOverlap = vm.TrySetUserMemoryRegion(MemslotRequest.Create(1, 0x38000, 0x1000, smram.HostAddress, addressSpace: 1).ToKernel());
        Check("the kernel agrees (EEXIST)", kernelOverlap == -Errno.EEXIST, $"{kernelOverlap}");
        var outOfRange = table.TryApply(MemslotRequest.Create(2, 0x90000, 0x1000, smram.HostAddress, addressSpace: 2));
        Check("as_id 2 is EINVAL", outOfRange.Errno == Errno.EINVAL, Errno.Name(outOfRange.Errno));

        tracker.AddGfn(0x34);
        foreach (ushort space in new ushort[] { 0, 1 })
        {
            var pieces = carved.PiecesOf(0, space);
            var readOnly = pieces.Where(p => p.IsTrackedCarve).ToList();
            bool carvedRight = pieces.Count == 3 && readOnly.Count == 1 && readOnly[0].GuestPhysAddr == 0x34000;
            Check($"tracked gfn 0x34 is carved read-only in as_id {space}", carvedRight, $"{pieces.Count} pieces");
            if (carvedRight) Check($"the kernel holds that piece in as_id {space}", vm.TrySetUserMemoryRegion(readOnly[0].ToKernel()) == 0);
        }
        tracker.RemoveGfn(0x34);
        Check("untracked again: one kernel slot per address space", carved.PiecesOf(0, 0).Count == 1 && carved.PiecesOf(0, 1).Count == 1);
        var deleted = table.TryApply(MemslotRequest.Delete(0, addressSpace: 1));
        Check("the as_id 1 slot is deleted, as_id 0 unchanged", deleted.Kind == MemslotChangeKind.Delete && table.Current.TryFindByGfn(0, 0x30, out _) && !table.Current.TryFindByGfn(1, 0x30, out _));

        Console.WriteLine(failures == 0 ? "smm-check: all passed" : $"smm-check: {failures} failed");
        return failures == 0 ? 0 : 1;
    }
}
