using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Debug;

/// <summary>
/// A one-byte port the guest writes to end the VM with a status (like QEMU's isa-debug-exit); test kernels use it
/// to report pass/fail without a console.
/// </summary>
public sealed class DebugExitPort : IBusDevice
{
    /// <summary>The port is one byte wide.</summary>
    public const ulong RegisterBlockLength = 1;

    private const int NoStatus = -1;

    private readonly Action<byte> _onExit;
    private int _lastStatus = NoStatus;

    /// <param name="onExit">Called on the vCPU thread with the byte the guest wrote; the VMM decides how to stop the VM.</param>
    public DebugExitPort(Action<byte> onExit)
    {
        ArgumentNullException.ThrowIfNull(onExit);
        _onExit = onExit;
    }

    /// <summary>The last byte the guest wrote, or null if it has not written yet.</summary>
    public int? LastStatus
    {
        get
        {
            int status = Volatile.Read(ref _lastStatus);
            return status == NoStatus ? null : status;
        }
    }

    /// <inheritdoc />
    /// <remarks>Reads return zeros: the port only exists to be written.</remarks>
    public void Read(ulong offset, Span<byte> data) => data.Clear();

    /// <inheritdoc />
    /// <remarks>Only the first byte of a wider write is the status.</remarks>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        byte status = data[0];
        Volatile.Write(ref _lastStatus, status);
        _onExit(status);
    }
}
