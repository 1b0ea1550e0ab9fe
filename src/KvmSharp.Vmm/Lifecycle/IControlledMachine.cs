using KvmSharp.Devices.Events;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// What <see cref="VmController"/> drives: <see cref="VirtualMachine"/> in the VMM, a fake in the state
/// machine's unit tests.
/// </summary>
internal interface IControlledMachine : IDisposable
{
    /// <summary>Set once the machine has ended.</summary>
    VmOutcome? Outcome { get; }

    /// <summary>Raised once, on the thread that ended the machine (a vCPU's, the caller of <see cref="End"/>).</summary>
    event Action<VmOutcome>? Ended;

    /// <summary>Create the vCPU threads and let them run.</summary>
    void Start();

    /// <summary>End the machine with <paramref name="outcome"/>; the first caller wins.</summary>
    void End(VmOutcome outcome);

    /// <summary>Ctrl-Alt-Del on the PC keyboard; false when there is none.</summary>
    bool RequestGuestShutdown();

    /// <summary>Where pause leases come from.</summary>
    VcpuPauseGate Pauses { get; }

    /// <summary>The VM's I/O loop, if one runs.</summary>
    IEventLoop? EventLoop { get; }

    /// <summary>vCPUs in a userspace exit handler for longer than <paramref name="threshold"/>.</summary>
    IReadOnlyList<string> StalledVcpus(TimeSpan threshold);

    /// <summary>After the end: wait (bounded) until the vCPU threads have left KVM_RUN.</summary>
    void WaitForVcpuThreads();
}
