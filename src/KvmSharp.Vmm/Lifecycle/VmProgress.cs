namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// Whether the VM's threads are making progress (for systemd's watchdog): a vCPU inside KVM_RUN or
/// parked by a pause is fine, one stuck in a userspace exit handler longer than the threshold is
/// not, and the event loop must have run a posted no-op within the threshold.
/// </summary>
/// <param name="Stalled">What is stuck and for how long ("vCPU 1 in an exit handler for 12.0 s"); empty when all progress.</param>
public sealed record VmProgress(IReadOnlyList<string> Stalled)
{
    public bool IsHealthy => Stalled.Count == 0;
}
