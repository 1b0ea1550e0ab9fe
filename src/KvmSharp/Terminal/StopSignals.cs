using System.Runtime.InteropServices;

namespace KvmSharp.Terminal;

/// <summary>
/// SIGTERM, SIGINT and SIGHUP stop the VM at once, from the signal's own handler thread.
/// </summary>
/// <remarks>
/// <para>The host already turns SIGTERM and SIGINT into a clean stop, but through several thread-pool hops before the
/// VM hears of it; with hundreds of spinning vCPUs on two host CPUs each hop waited seconds. Stopping the VM first
/// ends the contention, and the host's own handling (which runs next) then finds it over.</para>
/// <para>SIGHUP (the terminal closed, the session ended) is a clean stop too: without a handler its default action
/// kills the process on the spot, with no "VM ended" line, the terminal left raw, and the runtime's
/// /tmp/clr-debug-pipe-* and dotnet-diagnostic-* files left behind.</para>
/// </remarks>
public static class StopSignals
{
    /// <summary>Register the handlers; dispose the result to remove them.</summary>
    /// <param name="stopVm">Stops the VM (cleanly: a Linux guest may get Ctrl-Alt-Del); must be safe to call twice.</param>
    /// <param name="stopHost">Stops the host, for SIGHUP, which the host does not handle itself.</param>
    public static IDisposable Register(Action stopVm, Action stopHost)
    {
        ArgumentNullException.ThrowIfNull(stopVm);
        ArgumentNullException.ThrowIfNull(stopHost);
        var registrations = new List<PosixSignalRegistration>
        {
            // Cancelled: the process must not die of it before the host (built after the VM starts) handles it too.
            // The host's handler, once registered, still runs and stops the application as usual.
            PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
            {
                context.Cancel = true;
                stopVm();
            }),
            PosixSignalRegistration.Create(PosixSignal.SIGINT, context =>
            {
                context.Cancel = true;
                stopVm();
            }),
            PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
            {
                context.Cancel = true;
                stopVm();
                stopHost();
            }),
        };
        return new Registrations(registrations);
    }

    private sealed class Registrations(List<PosixSignalRegistration> registrations) : IDisposable
    {
        public void Dispose()
        {
            foreach (var registration in registrations) registration.Dispose();
        }
    }
}
