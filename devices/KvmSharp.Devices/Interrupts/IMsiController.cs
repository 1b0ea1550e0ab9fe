namespace KvmSharp.Devices.Interrupts;

/// <summary>Hands out MSI vectors; the VMM backs it with KVM's GSI routing and irqfds.</summary>
public interface IMsiController
{
    /// <summary>A new vector, not yet programmed (triggers before <see cref="IMsiVector.Update"/> are dropped).</summary>
    IMsiVector AllocateVector();
}
