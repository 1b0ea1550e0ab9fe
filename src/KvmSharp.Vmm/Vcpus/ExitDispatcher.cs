using KvmSharp.Devices.Bus;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Statistics;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// Decodes a kvm_run exit and routes port I/O and MMIO to the buses. This is the hot path: no
/// allocation, no locks (the buses and the interceptor are read as immutable snapshots).
/// </summary>
public sealed unsafe class ExitDispatcher(DeviceBus portBus, DeviceBus mmioBus)
{
    public DeviceBus PortBus { get; } = portBus;
    public DeviceBus MmioBus { get; } = mmioBus;

    /// <summary>Optional first look at MMIO exits (page tracking installs one).</summary>
    public IMmioInterceptor? MmioInterceptor { get; set; }

    /// <summary>Optional look at instructions KVM could not emulate (page tracking completes stores to tracked pages).</summary>
    public IEmulationFailureHandler? EmulationFailure { get; set; }

    /// <summary>Harvests the dirty rings when a vCPU's ring is full (Ring mode); true resumes the vCPU, false ends it.</summary>
    public Func<int, bool>? DirtyRingFull { get; set; }

    public VcpuExitAction Dispatch(int vcpuId, kvm_run* run) => Dispatch(vcpuId, run, null);

    /// <summary>Handle one exit; when <paramref name="counters"/> is given, note which bus range took it.</summary>
    public VcpuExitAction Dispatch(int vcpuId, kvm_run* run, VcpuExitCounters? counters)
    {
        switch ((KvmExitReason)run->exit_reason)
        {
            case KvmExitReason.KVM_EXIT_IO:
                HandlePortIo(run, counters);
                return VcpuExitAction.Continue;
            case KvmExitReason.KVM_EXIT_MMIO:
                HandleMmio(vcpuId, run, counters);
                return VcpuExitAction.Continue;
            case KvmExitReason.KVM_EXIT_HLT:
                return VcpuExitAction.Halt;
            case KvmExitReason.KVM_EXIT_INTR:
            case KvmExitReason.KVM_EXIT_IRQ_WINDOW_OPEN:
                return VcpuExitAction.Continue;
            case KvmExitReason.KVM_EXIT_INTERNAL_ERROR when EmulationFailure is { } emulation:
                if (emulation.TryHandle(vcpuId, run, out string? reason)) return VcpuExitAction.Continue;
                if (reason is not null && VcpuRunner.Current is { } runner) runner.FaultDetail = reason;
                return VcpuExitAction.Fault;
            case KvmExitReason.KVM_EXIT_DIRTY_RING_FULL when DirtyRingFull is { } harvest:
                return harvest(vcpuId) ? VcpuExitAction.Continue : VcpuExitAction.Fault;
            default:
                return VcpuExitAction.Fault;
        }
    }

    private void HandlePortIo(kvm_run* run, VcpuExitCounters? counters)
    {
        var io = (kvm_run_io*)((byte*)run + kvm_run.ExitUnionOffset);
        byte* data = (byte*)run + io->data_offset;
        int size = io->size;
        int rangeId = -1;
        // String I/O (rep ins/outs) arrives as `count` back-to-back elements.
        for (uint i = 0; i < io->count; i++, data += size)
        {
            if (io->direction == KvmRunIoDirection.KVM_EXIT_IO_OUT)
                PortBus.Write(io->port, new ReadOnlySpan<byte>(data, size), out rangeId);
            else
                PortBus.Read(io->port, new Span<byte>(data, size), out rangeId);
        }
        counters?.NoteRange(ExitBus.Port, rangeId);
    }

    private void HandleMmio(int vcpuId, kvm_run* run, VcpuExitCounters? counters)
    {
        var mmio = (kvm_run_mmio*)((byte*)run + kvm_run.ExitUnionOffset);
        var data = new Span<byte>(mmio->data, (int)Math.Min(mmio->len, 8u));
        bool isWrite = mmio->is_write != 0;
        if (MmioInterceptor is { } interceptor && interceptor.TryHandle(vcpuId, run->flags & KvmRunFlags.KVM_RUN_X86_SMM, mmio->phys_addr, data, isWrite))
        {
            counters?.NoteIntercepted();
            return;
        }
        int rangeId;
        if (isWrite) MmioBus.Write(mmio->phys_addr, data, out rangeId);
        else MmioBus.Read(mmio->phys_addr, data, out rangeId);
        counters?.NoteRange(ExitBus.Mmio, rangeId);
    }
}
