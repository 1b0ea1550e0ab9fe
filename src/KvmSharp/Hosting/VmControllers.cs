using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;

namespace KvmSharp.Hosting;

/// <summary>Makes the controller of each VM the host runs: the one line that names the implementation.</summary>
internal static class VmControllers
{
    public static IVmController Create(VirtualMachine vm) => new InterimVmController(vm);
}
