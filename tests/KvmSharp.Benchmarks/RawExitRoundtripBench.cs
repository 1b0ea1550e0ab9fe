using System.Diagnostics;
using System.Globalization;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Regions;
using KvmSharp.Vmm.Boot;

namespace KvmSharp.Benchmarks;

/// <summary>
/// A diagnostic middle point between the C reference and the full stack: the C program's loop, written in
/// C# on KvmSharp.Kvm alone (KvmVcpu.RunOnce, a switch on kvm_run), on a dedicated thread like a
/// VcpuRunner. No VirtualMachine, VcpuRunner, ExitDispatcher or DeviceBus. Same guest, setup and timed
/// interval as exit_roundtrip.c. If this is as slow as the full stack, the cost is in being a .NET process
/// (P/Invoke, runtime threads), not in KvmSharp's dispatch code.
/// </summary>
internal static unsafe class RawExitRoundtripBench
{
    private const ulong TssAddress = 0xFFFB_D000;
    private const ulong IdentityMapAddress = 0xFFFB_C000;

    public static int Run(string file, int warmups)
    {
        byte[] bytes = File.ReadAllBytes(file);
        for (int i = 0; i < warmups; i++)
        {
            RunOnThread(bytes);
            Thread.Sleep(150);
        }
        var (exits, ns, cpuNs) = RunOnThread(bytes);
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"exits_0x80={exits}");
        Console.WriteLine(string.Create(inv, $"cpu_ns_per_exit={cpuNs:F1}"));
        Console.WriteLine(string.Create(inv, $"ns_per_exit={ns:F1}"));
        return 0;
    }

    private static (long, double, double) RunOnThread(byte[] bytes)
    {
        (long, double, double) result = default;
        Exception? error = null;
        var thread = new Thread(() =>
        {
            try { result = RunOnce(bytes); }
            catch (Exception e) { error = e; }
        }, maxStackSize: 1 << 20) { Name = "raw-vcpu" };
        thread.Start();
        thread.Join();
        if (error is not null) throw new BenchException($"raw run failed: {error.Message}");
        return result;
    }

    private static (long, double, double) RunOnce(byte[] bytes)
    {
        using var system = KvmSystem.Open();
        using var vm = system.CreateVm();
        if (system.CheckExtension(KvmCap.KVM_CAP_SET_TSS_ADDR) > 0) vm.SetTssAddress(TssAddress);
        if (system.CheckExtension(KvmCap.KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0) vm.SetIdentityMapAddress(IdentityMapAddress);
        using var ram = GuestMemoryRegion.CreateAnonymous(ExitRoundtripGuest.MemoryBytes, "raw-bench");
        bytes.CopyTo(new Span<byte>((byte*)ram.HostAddress + ExitRoundtripGuest.LoadAddress, bytes.Length));
        int set = vm.TrySetUserMemoryRegion(new kvm_userspace_memory_region
        {
            slot = 0, guest_phys_addr = 0, memory_size = ram.Size, userspace_addr = ram.HostAddress,
        });
        if (set < 0) throw new BenchException($"KVM_SET_USER_MEMORY_REGION failed: errno {-set}");
        using var vcpu = vm.CreateVcpu(0);
        CpuidSetup.Apply(vcpu, system.GetSupportedCpuid(), cpus: 1);
        RealModeSetup.Enter(vcpu, ExitRoundtripGuest.LoadAddress);

        kvm_run* run = vcpu.Run;
        var io = (kvm_run_io*)((byte*)run + kvm_run.ExitUnionOffset);
        long benchExits = 0, t0 = 0, t1, cpu0 = 0, cpu1;
        while (true)
        {
            int rc = vcpu.RunOnce();
            if (rc < 0)
            {
                if (rc == -Errno.EINTR || rc == -Errno.EAGAIN) continue;
                throw new BenchException($"KVM_RUN failed: errno {-rc}");
            }
            var reason = (KvmExitReason)run->exit_reason;
            if (reason == KvmExitReason.KVM_EXIT_IO && io->direction == KvmRunIoDirection.KVM_EXIT_IO_OUT)
            {
                if (io->port == ExitRoundtripGuest.BenchPort)
                {
                    if (benchExits++ == 0) { t0 = Stopwatch.GetTimestamp(); cpu0 = ThreadClock.NowNs(); }
                    continue;
                }
                if (io->port == ExitRoundtripGuest.DebugExitPort) { t1 = Stopwatch.GetTimestamp(); cpu1 = ThreadClock.NowNs(); break; }
                continue;
            }
            if (reason == KvmExitReason.KVM_EXIT_INTR) continue;
            throw new BenchException($"unexpected exit {reason}");
        }
        if (benchExits == 0) throw new BenchException("the guest made no exit on port 0x80");
        return (benchExits, (t1 - t0) * 1e9 / Stopwatch.Frequency / benchExits, (double)(cpu1 - cpu0) / benchExits);
    }
}
