using KvmSharp.Devices.Bus;
using KvmSharp.Kvm;

namespace KvmSharp.Vmm.Machine;

/// <summary>A device interrupt line wired to a GSI of the in-kernel irqchip through KVM_IRQ_LINE.</summary>
public sealed class KvmIrqLine(KvmVm vm, uint gsi) : IInterruptLine
{
    public uint Gsi { get; } = gsi;

    public void SetLevel(bool asserted) => vm.SetIrqLine(Gsi, asserted);
}
