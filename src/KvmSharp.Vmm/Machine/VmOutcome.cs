namespace KvmSharp.Vmm.Machine;

/// <summary>The end of a VM: how, the process exit code it maps to, and a report when something went wrong.</summary>
public sealed record VmOutcome(VmExitKind Kind, int ExitCode, string Summary, string? Report = null)
{
    /// <summary>Exit codes for endings the guest did not choose (a guest's own status is 0-255 as written).</summary>
    public const int HaltedCode = 0, StoppedCode = 0, RebootCode = 0, PowerOffCode = 0, ExpectMatchedCode = 0, ExpectUnmetCode = 1, ErrorCode = 70, FaultCode = 71, OutputFailedCode = 74, TimeoutCode = 124;

    public static VmOutcome GuestExit(byte status) => new(VmExitKind.GuestExit, status, $"guest exited with status {status}");
    public static VmOutcome PowerOff() => new(VmExitKind.PowerOff, PowerOffCode, "the guest powered off (ACPI S5)");
    public static VmOutcome Reboot(string how) => new(VmExitKind.Reboot, RebootCode, $"the guest rebooted ({how})");
    public static VmOutcome ExpectMatched(string text) => new(VmExitKind.Expected, ExpectMatchedCode, $"the console showed '{text}'");
    public static VmOutcome Timeout(TimeSpan after, string? waitingFor) =>
        new(VmExitKind.Timeout, TimeoutCode, waitingFor is null ? $"timed out after {after.TotalSeconds:0.#} s" : $"timed out after {after.TotalSeconds:0.#} s waiting for '{waitingFor}' on the console");
    public static VmOutcome Halted() => new(VmExitKind.Halted, HaltedCode, "all vCPUs halted");
    public static VmOutcome Stopped(string why) => new(VmExitKind.Stopped, StoppedCode, $"stopped: {why}");
    public static VmOutcome Fault(string summary, string report) => new(VmExitKind.Fault, FaultCode, summary, report);
    public static VmOutcome Error(string summary, string? report = null) => new(VmExitKind.Error, ErrorCode, summary, report);
    /// <summary>The serial console's output failed (its reader went away): EX_IOERR.</summary>
    public static VmOutcome OutputFailed(string why) => new(VmExitKind.Error, OutputFailedCode, why);
}
