namespace KvmSharp.Hosting;

/// <summary>Carries the VM's exit status out of the host to the process exit code.</summary>
public sealed class ExitCodeHolder
{
    public int ExitCode { get; set; }
}
