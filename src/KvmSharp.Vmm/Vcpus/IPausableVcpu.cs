namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// What <see cref="VcpuPauseGate"/> needs of a vCPU: a pause count it raises and lowers once per lease,
/// a wait until the vCPU runs no guest code, and the guest-clock notice for a pause. A seam so the
/// lease rules are testable without KVM.
/// </summary>
internal interface IPausableVcpu
{
    int Id { get; }

    /// <summary>One more pause held; kicks the vCPU out of KVM_RUN. False (nothing held) when its thread has ended.</summary>
    bool BeginPause();

    /// <summary>Wait until the vCPU runs no guest code (or has ended), at most until <paramref name="deadline"/> (Stopwatch ticks).</summary>
    bool WaitParked(long deadline);

    /// <summary>One pause fewer; the vCPU runs again when none is held.</summary>
    void ReleasePause();

    /// <summary>KVM_KVMCLOCK_CTRL on a parked vCPU: 0, -errno, or 1 when there was nothing to tell.</summary>
    int StopGuestClock();

    /// <summary>Why it has not parked (in which exit handler, for how long), for the pause's error.</summary>
    string DescribeNotParked();
}
