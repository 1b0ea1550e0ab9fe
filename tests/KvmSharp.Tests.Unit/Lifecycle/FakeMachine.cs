using KvmSharp.Devices.Events;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>What the controller drives, without KVM: fake vCPUs under a real pause gate; records what it was asked.</summary>
internal sealed class FakeMachine : IControlledMachine
{
    private VmOutcome? _outcome;

    public FakeMachine(int vcpus = 2)
    {
        for (int i = 0; i < vcpus; i++)
        {
            var vcpu = new FakeVcpu(i);
            Vcpus.Add(vcpu);
            Pauses.Add(vcpu);
        }
    }

    public List<FakeVcpu> Vcpus { get; } = new();
    public VcpuPauseGate Pauses { get; } = new();
    public int Starts { get; private set; }
    public int CtrlAltDels { get; private set; }
    public bool HasKeyboard { get; set; } = true;
    public bool Disposed { get; private set; }
    public Exception? StartFailure { get; set; }
    public IEventLoop? EventLoop { get; set; }
    public List<string> Stalls { get; } = new();

    public VmOutcome? Outcome => Volatile.Read(ref _outcome);

    public event Action<VmOutcome>? Ended;

    public void Start()
    {
        if (StartFailure is { } failure) throw failure;
        Starts++;
    }

    public void End(VmOutcome outcome)
    {
        if (Interlocked.CompareExchange(ref _outcome, outcome, null) is not null) return;
        Ended?.Invoke(outcome);
    }

    public bool RequestGuestShutdown()
    {
        if (!HasKeyboard) return false;
        CtrlAltDels++;
        return true;
    }

    public IReadOnlyList<string> StalledVcpus(TimeSpan threshold) => Stalls.ToList();

    public void WaitForVcpuThreads()
    {
    }

    public void Dispose() => Disposed = true;
}
