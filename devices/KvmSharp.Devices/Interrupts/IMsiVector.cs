namespace KvmSharp.Devices.Interrupts;

/// <summary>
/// One MSI/MSI-X vector of a device. The device (e.g. an MSI-X table) tells the VMM the message the
/// guest programmed; <see cref="IInterruptTrigger.Trigger"/> then delivers it (KVM: a GSI route and
/// an irqfd). Devices never see KVM.
/// </summary>
public interface IMsiVector : IInterruptTrigger, IDisposable
{
    /// <summary>The guest wrote the vector's message address and data (the route is updated; a masked vector's triggers are the device's to hold pending).</summary>
    void Update(ulong messageAddress, uint messageData);
}
