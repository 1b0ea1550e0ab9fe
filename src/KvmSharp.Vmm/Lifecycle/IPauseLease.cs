namespace KvmSharp.Vmm.Lifecycle;

/// <summary>
/// One holder's pause of a VM: the VM stays paused while any lease is held and runs again when the
/// last is disposed. Disposing releases this holder's lease only (an API resume never ends a
/// page-track carve's pause). Disposing twice is harmless.
/// </summary>
public interface IPauseLease : IDisposable
{
    /// <summary>Who holds it ("api", "page-track carve", "tracker unregister", ...), for errors and logs.</summary>
    string Holder { get; }
}
