using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>Makes the controller of each VM the host runs: the one line that names the implementation.</summary>
internal static class VmControllers
{
    /// <summary>The controller of <paramref name="vm"/>, which owns it from now on (disposing the controller disposes the VM).</summary>
    public static IVmController Create(VirtualMachine vm) => new VmController(vm);
}
