namespace KvmSharp.Hosting;

/// <summary>
/// Carries the VM's exit status out of the host to the process exit code. It starts as a host
/// failure (70), so a run that ends without deciding a status is never reported as success.
/// </summary>
public sealed class ExitCodeHolder
{
    public int ExitCode { get; set; } = Program.HostFailure;
}
