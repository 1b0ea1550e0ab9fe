namespace KvmSharp.Devices.Bus;

/// <summary>An interrupt line a device drives; the VMM decides how it reaches the guest (KVM_IRQ_LINE, irqfd, or nothing).</summary>
public interface IInterruptLine
{
    /// <summary>Drive the line to <paramref name="asserted"/> (level semantics).</summary>
    void SetLevel(bool asserted);
}
