namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// A control request that the VM's state does not allow (resume a running VM, start a stopped one).
/// The API answers it with 409 and <see cref="Exception.Message"/> as the fault message; nothing changed.
/// </summary>
public sealed class VmTransitionException(VmState state, string request, string message)
    : InvalidOperationException(message)
{
    public VmState State { get; } = state;

    /// <summary>What was asked ("pause", "resume", "start", ...).</summary>
    public string Request { get; } = request;
}
