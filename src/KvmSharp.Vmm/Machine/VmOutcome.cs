namespace KvmSharp.Vmm.Machine;

/// <summary>The end of a VM: how, the process exit code it maps to, and a report when something went wrong.</summary>
public sealed record VmOutcome(VmExitKind Kind, int ExitCode, string Summary, string? Report = null)
{
    /// <summary>Exit codes for endings the guest did not choose (a guest's own status is 0-255 as written).</summary>
    public const int HaltedCode = 0, StoppedCode = 0, ErrorCode = 70, FaultCode = 71;

    public static VmOutcome GuestExit(byte status) => new(VmExitKind.GuestExit, status, $"guest exited with status {status}");
    public static VmOutcome Halted() => new(VmExitKind.Halted, HaltedCode, "all vCPUs halted");
    public static VmOutcome Stopped(string why) => new(VmExitKind.Stopped, StoppedCode, $"stopped: {why}");
    public static VmOutcome Fault(string summary, string report) => new(VmExitKind.Fault, FaultCode, summary, report);
    public static VmOutcome Error(string summary, string? report = null) => new(VmExitKind.Error, ErrorCode, summary, report);
}
