using System.Runtime.InteropServices;

namespace KvmSharp.Terminal;

/// <summary>
/// SIGHUP (the terminal closed, or the session ended) stops the VM cleanly, as SIGTERM and SIGINT already do through
/// the host. Without this the default action kills the process on the spot: no "VM ended" line, the terminal left raw,
/// and the runtime's /tmp/clr-debug-pipe-* and dotnet-diagnostic-* files left behind.
/// </summary>
public static class HangupSignal
{
    /// <summary>Call <paramref name="stop"/> on SIGHUP instead of dying; dispose the result to restore the default.</summary>
    public static IDisposable StopOnHangup(Action stop)
    {
        ArgumentNullException.ThrowIfNull(stop);
        return PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true;
            stop();
        });
    }
}
