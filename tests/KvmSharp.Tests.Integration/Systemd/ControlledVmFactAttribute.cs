using KvmSharp.Hosting;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Systemd;

/// <summary>
/// A test of the `kvmsharp` binary's VM under a controller (<see cref="ActiveVm"/>): skipped, with that reason,
/// while <see cref="VmService"/> does not take an ActiveVm to set (the control API's wiring lands separately);
/// on /dev/kvm like <see cref="KvmFactAttribute"/>.
/// </summary>
public sealed class ControlledVmFactAttribute : FactAttribute
{
    public static bool VmServiceSetsActiveVm { get; } =
        typeof(VmService).GetConstructors().Any(c => c.GetParameters().Any(p => p.ParameterType == typeof(ActiveVm)));

    public ControlledVmFactAttribute()
    {
        Skip = KvmAvailability.SkipReason() ??
               (VmServiceSetsActiveVm ? null : "VmService does not set ActiveVm yet (the API helper's wiring): the notifier has no VM to follow in the binary");
    }
}
