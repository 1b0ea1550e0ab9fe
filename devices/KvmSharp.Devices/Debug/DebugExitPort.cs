using System.Buffers.Binary;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Debug;

/// <summary>
/// A port the guest writes to end the VM with a status; test kernels use it to report pass/fail without a
/// console. Two behaviours: KvmSharp's own (the first byte written is the status), and QEMU's isa-debug-exit
/// (the value written, up to 4 bytes, ends the VM with status (value &lt;&lt; 1) | 1, so a status never reads 0).
/// </summary>
public sealed class DebugExitPort : IBusDevice
{
    /// <summary>KvmSharp's port is one byte wide unless told otherwise.</summary>
    public const ulong RegisterBlockLength = 1;

    private const int NoStatus = -1;

    private readonly Action<byte>? _onExit;
    private readonly Action<uint, byte>? _onQemuExit;
    private int _lastStatus = NoStatus;

    /// <param name="onExit">Called on the vCPU thread with the byte the guest wrote; the VMM decides how to stop the VM.</param>
    /// <param name="width">Ports the device spans (1, 2 or 4); any write to them counts.</param>
    public DebugExitPort(Action<byte> onExit, int width = 1)
    {
        ArgumentNullException.ThrowIfNull(onExit);
        Width = CheckWidth(width);
        _onExit = onExit;
    }

    /// <summary>QEMU's isa-debug-exit: <paramref name="onExit"/> gets the value written and the status (value &lt;&lt; 1) | 1, truncated to a byte as exit(3) does.</summary>
    public DebugExitPort(int width, Action<uint, byte> onExit)
    {
        ArgumentNullException.ThrowIfNull(onExit);
        Width = CheckWidth(width);
        _onQemuExit = onExit;
    }

    /// <summary>Ports the device spans: register it with this length.</summary>
    public ulong Width { get; }

    /// <summary>True for QEMU's isa-debug-exit behaviour.</summary>
    public bool QemuSemantics => _onQemuExit is not null;

    /// <summary>The last status the guest caused, or null if it has not written yet.</summary>
    public int? LastStatus
    {
        get
        {
            int status = Volatile.Read(ref _lastStatus);
            return status == NoStatus ? null : status;
        }
    }

    /// <summary>The exit status QEMU's isa-debug-exit gives for <paramref name="value"/>: (value &lt;&lt; 1) | 1, as the low byte exit(3) keeps.</summary>
    public static byte QemuStatus(uint value) => (byte)((value << 1) | 1);

    /// <inheritdoc />
    /// <remarks>Reads return zeros: the port only exists to be written.</remarks>
    public void Read(ulong offset, Span<byte> data) => data.Clear();

    /// <inheritdoc />
    /// <remarks>KvmSharp's behaviour: only the first byte of a wider write is the status. QEMU's: the whole write (up to 4 bytes, little-endian) is the value, wherever in the range it lands.</remarks>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        if (_onQemuExit is { } onQemuExit)
        {
            uint value = data.Length switch
            {
                1 => data[0],
                2 or 3 => BinaryPrimitives.ReadUInt16LittleEndian(data),
                _ => BinaryPrimitives.ReadUInt32LittleEndian(data),
            };
            byte qemuStatus = QemuStatus(value);
            Volatile.Write(ref _lastStatus, qemuStatus);
            onQemuExit(value, qemuStatus);
            return;
        }

        byte status = data[0];
        Volatile.Write(ref _lastStatus, status);
        _onExit!(status);
    }

    private static ulong CheckWidth(int width) =>
        width is 1 or 2 or 4 ? (ulong)width : throw new ArgumentOutOfRangeException(nameof(width), width, "the debug-exit port is 1, 2 or 4 bytes wide");
}
