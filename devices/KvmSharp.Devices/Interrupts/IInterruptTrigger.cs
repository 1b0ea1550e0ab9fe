namespace KvmSharp.Devices.Interrupts;

/// <summary>An edge-triggered interrupt a device raises; the VMM decides how it reaches the guest (irqfd, KVM_SIGNAL_MSI, or a test's counter).</summary>
public interface IInterruptTrigger
{
    /// <summary>Raise the interrupt once. Callable from any thread, allocation-free.</summary>
    void Trigger();
}
