using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using KvmSharp.Vmm.Lifecycle;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// The one way to pause a VM's vCPUs: a lease per holder (the controller's API pause, a page-track
/// carve, a register dump). Each lease raises every vCPU's pause count once and its disposal lowers
/// exactly those counts once, so one holder can never end another's pause; the vCPUs run again when
/// the last lease is gone. A vCPU added while leases are held starts paused under each of them.
/// </summary>
public sealed class VcpuPauseGate
{
    private readonly Lock _lock = new();
    private readonly List<IPausableVcpu> _vcpus = new();
    private readonly List<Lease> _held = new();

    /// <summary>Who holds a lease now, oldest first (for errors and diagnostics).</summary>
    public IReadOnlyList<string> Holders
    {
        get { lock (_lock) return _held.Select(l => l.Holder).ToList(); }
    }

    /// <summary>How many leases are held now.</summary>
    public int HeldCount
    {
        get { lock (_lock) return _held.Count; }
    }

    /// <summary>Put a vCPU under the gate before its thread starts; it starts paused if leases are held.</summary>
    internal void Add(IPausableVcpu vcpu)
    {
        lock (_lock)
        {
            _vcpus.Add(vcpu);
            foreach (var lease in _held)
                if (vcpu.BeginPause()) lease.Vcpus.Add(vcpu);
        }
    }

    /// <summary>
    /// Pause every vCPU for <paramref name="holder"/> and wait (up to <paramref name="timeout"/>) until none runs
    /// guest code. On time-out nothing stays paused by this call and <paramref name="failure"/> says which vCPU
    /// did not park and where it was. Ended vCPUs count as parked.
    /// </summary>
    public bool TryPause(string holder, TimeSpan timeout, [NotNullWhen(true)] out IPauseLease? lease, [NotNullWhen(false)] out string? failure)
    {
        var taken = Pause(holder, timeout, out var late);
        if (late.Count == 0)
        {
            lease = taken;
            failure = null;
            return true;
        }
        taken.Dispose();
        lease = null;
        failure = $"{holder}: {string.Join("; ", late)} (no pause within {timeout.TotalSeconds:0.###} s)";
        return false;
    }

    /// <summary>
    /// As <see cref="TryPause"/>, but the lease is kept even when some vCPUs did not park in time (they park
    /// as soon as they can, under this lease); <paramref name="late"/> says which and where they are.
    /// </summary>
    public IPauseLease Pause(string holder, TimeSpan timeout, out IReadOnlyList<string> late)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(holder);
        var lease = new Lease(this, holder);
        IPausableVcpu[] asked;
        lock (_lock)
        {
            // Ask every vCPU first, then wait: the pause costs the slowest vCPU's time, not the sum.
            foreach (var vcpu in _vcpus)
                if (vcpu.BeginPause()) lease.Vcpus.Add(vcpu);
            _held.Add(lease);
            asked = lease.Vcpus.ToArray();
        }
        long deadline = Stopwatch.GetTimestamp() + (long)(timeout.TotalSeconds * Stopwatch.Frequency);
        List<string>? notParked = null;
        foreach (var vcpu in asked)
            if (!vcpu.WaitParked(deadline)) (notParked ??= new()).Add(vcpu.DescribeNotParked());
        late = notParked ?? (IReadOnlyList<string>)[];
        return lease;
    }

    private void Release(Lease lease)
    {
        lock (_lock)
        {
            _held.Remove(lease);
            foreach (var vcpu in lease.Vcpus) vcpu.ReleasePause();
        }
    }

    // KVM_KVMCLOCK_CTRL on each vCPU the lease holds; the failures other than "no kvmclock" (EINVAL).
    private IReadOnlyList<string> StopGuestClocks(Lease lease)
    {
        IPausableVcpu[] vcpus;
        lock (_lock) vcpus = lease.Vcpus.ToArray();
        List<string>? failures = null;
        foreach (var vcpu in vcpus)
        {
            int result = vcpu.StopGuestClock();
            if (result < 0 && result != -KvmSharp.Kvm.Interop.Errno.EINVAL)
                (failures ??= new()).Add($"vCPU {vcpu.Id}: KVM_KVMCLOCK_CTRL failed with errno {-result}");
        }
        return failures ?? (IReadOnlyList<string>)[];
    }

    /// <summary>Tell the guest, through KVM_KVMCLOCK_CTRL on every vCPU <paramref name="lease"/> holds, that it was stopped; returns the failures (a guest without kvmclock is not one).</summary>
    public IReadOnlyList<string> StopGuestClocks(IPauseLease lease) =>
        lease is Lease own && own.Gate == this ? StopGuestClocks(own) : throw new ArgumentException("the lease is not from this gate", nameof(lease));

    private sealed class Lease(VcpuPauseGate gate, string holder) : IPauseLease
    {
        private int _released;

        public VcpuPauseGate Gate { get; } = gate;
        public string Holder { get; } = holder;

        // The vCPUs this lease paused (each exactly once); written under the gate's lock.
        public List<IPausableVcpu> Vcpus { get; } = new();

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0) Gate.Release(this);
        }

        public override string ToString() => $"pause lease of {Holder}";
    }
}
