using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Devices.Serial;
using KvmSharp.Devices.Statistics;
using KvmSharp.Devices.Virtio.Queues;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace KvmSharp.Devices.Virtio.Console;

/// <summary>
/// virtio-console. Port 0 is the console (the guest's hvc0): its output goes to an
/// <see cref="ISerialSink"/>, and the VMM feeds it typed bytes with <see cref="SendInput(ReadOnlySpan{byte})"/>,
/// which wait until the guest posts receive buffers. With named ports (<see cref="ConsolePortSpec"/>)
/// the device offers VIRTIO_CONSOLE_F_MULTIPORT: control queues announce the ports (PORT_ADD, then
/// CONSOLE_PORT for port 0, PORT_NAME and PORT_OPEN for the others) and each port has its own pair
/// of queues. Also offers EMERG_WRITE (a byte written to the config space is console output).
/// </summary>
/// <example>
/// <code>
/// var ports = portSpecs.Select(spec => spec.Open()).ToList();          // IOException: exit 2
/// var console = new VirtioConsole(serialSink, ports, loggerFactory.CreateLogger&lt;VirtioConsole&gt;());
/// stdinPump.OnBytes += bytes => console.SendInput(bytes);              // typed keys reach hvc0
/// </code>
/// </example>
/// <remarks>Queues: without multiport, 0 = receive, 1 = transmit (port 0). With multiport, port 0 at 0/1,
/// the control receive/transmit queues at 2/3, port N at 2N+2/2N+3. Not a hot path: one lock serializes
/// everything, host input included.</remarks>
public sealed class VirtioConsole : IVirtioDevice, IDeviceIoStatistics
{
    public const ushort DefaultQueueSize = 128;

    /// <summary>Most named ports (ports 1 to 30).</summary>
    public const int MaxNamedPorts = 30;

    /// <summary>Host bytes held per port while the guest posts no receive buffer; more are dropped and counted.</summary>
    public const int MaxPendingInputBytes = 64 * 1024;

    private const int ControlReceiveQueue = 2;
    private const int ControlTransmitQueue = 3;

    private readonly ISerialSink _console;
    private readonly VirtioConsolePort[] _ports;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly Queue<byte>[] _pendingInput;
    private readonly bool[] _portReady;
    private readonly bool[] _guestOpen;
    private readonly Queue<byte[]> _pendingControl = new();
    private readonly DescriptorChain _chain = new();
    private readonly byte[] _scratch = new byte[16 * 1024];
    private SplitVirtqueue?[] _queues = [];
    private VirtioActivation? _activation;
    private bool _multiport;
    private bool _needsResetReported;
    private bool _backendsStarted;
    private long _droppedInput;
    // Ports that became ready while handling control messages: their held input is flushed afterwards.
    private ulong _flushAfterControl;

    /// <param name="consoleOutput">Where port 0's output (hvc0) goes.</param>
    /// <param name="ports">Named ports 1, 2, ... (the device owns them from now on); none: a single-port console without MULTIPORT.</param>
    public VirtioConsole(ISerialSink consoleOutput, IReadOnlyList<VirtioConsolePort>? ports = null, ILogger<VirtioConsole>? logger = null, ushort queueSize = DefaultQueueSize)
    {
        ArgumentNullException.ThrowIfNull(consoleOutput);
        _console = consoleOutput;
        _ports = [.. ports ?? []];
        if (_ports.Length > MaxNamedPorts)
        {
            throw new ArgumentOutOfRangeException(nameof(ports), _ports.Length, $"at most {MaxNamedPorts} named ports");
        }

        if (_ports.Select(p => p.Name).Distinct(StringComparer.Ordinal).Count() != _ports.Length)
        {
            throw new ArgumentException("port names must be unique", nameof(ports));
        }

        _logger = (ILogger?)logger ?? NullLogger.Instance;
        int portCount = _ports.Length + 1;
        _pendingInput = [.. Enumerable.Range(0, portCount).Select(_ => new Queue<byte>())];
        _portReady = new bool[portCount];
        _guestOpen = new bool[portCount];
        int queueCount = _ports.Length > 0 ? 2 * portCount + 2 : 2;
        QueueMaxSizes = [.. Enumerable.Repeat(queueSize, queueCount)];
        AvailableFeatures = VirtioFeatureBits.VIRTIO_RING_F_EVENT_IDX | VirtioFeatureBits.VIRTIO_RING_F_INDIRECT_DESC
            | (1UL << VirtioConsoleFeatures.VIRTIO_CONSOLE_F_EMERG_WRITE)
            | (_ports.Length > 0 ? 1UL << VirtioConsoleFeatures.VIRTIO_CONSOLE_F_MULTIPORT : 0);
    }

    public VirtioDeviceType DeviceType => VirtioDeviceType.Console;

    public ulong AvailableFeatures { get; }

    public IReadOnlyList<ushort> QueueMaxSizes { get; }

    public IReadOnlyList<VirtioConsolePort> Ports => _ports;

    /// <summary>Host bytes dropped because a port's pending input was full.</summary>
    public long DroppedInputBytes => Interlocked.Read(ref _droppedInput);

    /// <summary>Buffers of input given to the guest (reads) and of output taken from it (writes), every port, and their bytes.</summary>
    public DeviceIoCounters Io { get; } = new();

    /// <summary>Whether the guest has port <paramref name="port"/> open (PORT_OPEN from the driver; port 0 once it is a console).</summary>
    public bool IsOpenInGuest(int port)
    {
        lock (_gate)
        {
            return _guestOpen[port];
        }
    }

    public void ReadConfig(uint offset, Span<byte> data)
    {
        var config = new virtio_console_config { max_nr_ports = (uint)(_ports.Length + 1) };
        var bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateReadOnlySpan(ref config, 1));
        data.Clear();
        if (offset < (uint)bytes.Length)
        {
            var source = bytes[(int)offset..];
            source[..Math.Min(source.Length, data.Length)].CopyTo(data);
        }
    }

    /// <summary>Only emerg_wr (offset 8) is writable: its low byte is console output.</summary>
    public void WriteConfig(uint offset, ReadOnlySpan<byte> data)
    {
        const uint emergencyWrite = 8;
        if (offset == emergencyWrite && data.Length > 0)
        {
            _console.Write(data[0]);
        }
    }

    public void Activate(VirtioActivation activation)
    {
        ArgumentNullException.ThrowIfNull(activation);
        string? reset = null;
        lock (_gate)
        {
            _activation = activation;
            _needsResetReported = false;
            _multiport = _ports.Length > 0 && (activation.NegotiatedFeatures & (1UL << VirtioConsoleFeatures.VIRTIO_CONSOLE_F_MULTIPORT)) != 0;
            int queueCount = _multiport ? 2 * (_ports.Length + 1) + 2 : 2;
            _queues = new SplitVirtqueue?[queueCount];
            foreach (var config in activation.Queues)
            {
                if (!config.Enabled || config.Index < 0 || config.Index >= queueCount)
                {
                    continue;
                }

                if (!SplitVirtqueue.TryCreate(config, activation.Memory, activation.NegotiatedFeatures, out var queue, out var error))
                {
                    reset ??= error!.ToString();
                    continue;
                }

                _queues[config.Index] = queue;
            }

            // Without multiport, port 0 is a console from the start.
            Array.Clear(_portReady);
            Array.Clear(_guestOpen);
            _portReady[0] = !_multiport;
            _guestOpen[0] = !_multiport;
            _pendingControl.Clear();
            if (!_backendsStarted)
            {
                _backendsStarted = true;
                for (int i = 0; i < _ports.Length; i++)
                {
                    int port = i + 1;
                    _ports[i].Backend.Start(bytes => SendInput(port, bytes.Span), connected => HostConnectionChanged(port, connected));
                }
            }
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
            return;
        }

        VirtioConsoleLog.Activated(_logger, _multiport, _ports.Length + 1);
    }

    public void QueueNotify(int queueIndex)
    {
        string? reset;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            if (activation is null || queueIndex < 0 || queueIndex >= _queues.Length || _queues[queueIndex] is null)
            {
                return;
            }

            reset = queueIndex switch
            {
                ControlReceiveQueue when _multiport => FlushControl(),
                ControlTransmitQueue when _multiport => ServeControl(),
                _ when queueIndex % 2 == 0 => FlushInput(PortOfQueue(queueIndex)),
                _ => ServeOutput(PortOfQueue(queueIndex), queueIndex),
            };
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
        }
    }

    /// <summary>Bytes typed for the console (hvc0); they wait for the guest's receive buffers. Any thread.</summary>
    public void SendInput(ReadOnlySpan<byte> bytes) => SendInput(0, bytes);

    /// <summary>Bytes for port <paramref name="port"/> (0 = console); they wait for the guest's receive buffers. Any thread.</summary>
    public void SendInput(int port, ReadOnlySpan<byte> bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(port, _ports.Length);
        string? reset;
        VirtioActivation? activation;
        lock (_gate)
        {
            var pending = _pendingInput[port];
            foreach (byte value in bytes)
            {
                if (pending.Count >= MaxPendingInputBytes)
                {
                    _droppedInput++;
                    continue;
                }

                pending.Enqueue(value);
            }

            activation = _activation;
            reset = activation is null ? null : FlushInput(port);
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation!, reset);
        }
    }

    public void Reset()
    {
        lock (_gate)
        {
            _activation = null;
            _queues = [];
            _pendingControl.Clear();
            foreach (var pending in _pendingInput)
            {
                pending.Clear();
            }

            Array.Clear(_portReady);
            Array.Clear(_guestOpen);
        }
    }

    public void Dispose()
    {
        Reset();
        foreach (var port in _ports)
        {
            port.Dispose();
        }
    }

    private static int PortOfQueue(int queueIndex) => queueIndex < 2 ? 0 : (queueIndex - 2) / 2;

    private int ReceiveQueueOf(int port) => port == 0 ? 0 : 2 * port + 2;

    // Under _gate. Guest output on one port's transmit queue.
    private string? ServeOutput(int port, int queueIndex)
    {
        var queue = _queues[queueIndex]!;
        var memory = _activation!.Memory;
        while (true)
        {
            var result = queue.Pop(_chain);
            if (result == VirtqueuePopResult.Empty)
            {
                break;
            }

            if (result == VirtqueuePopResult.Broken)
            {
                return queue.Failure!.ToString();
            }

            for (uint offset = 0; offset < _chain.ReadableLength;)
            {
                int chunk = (int)Math.Min(_chain.ReadableLength - offset, (uint)_scratch.Length);
                if (!_chain.TryReadReadable(memory, offset, _scratch.AsSpan(0, chunk)))
                {
                    return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"console output of chain {_chain.HeadIndex} unreadable").ToString();
                }

                Emit(port, _scratch.AsSpan(0, chunk));
                offset += (uint)chunk;
            }

            Io.CountWrite(_chain.ReadableLength);

            if (!queue.TryPushUsed(_chain.HeadIndex, 0))
            {
                return queue.Failure!.ToString();
            }
        }

        return Notify(queue);
    }

    private void Emit(int port, ReadOnlySpan<byte> data)
    {
        if (port == 0)
        {
            foreach (byte value in data)
            {
                _console.Write(value);
            }
        }
        else
        {
            _ports[port - 1].Backend.Write(data);
        }
    }

    // Under _gate. Pending host bytes into the port's receive buffers, as far as they go.
    private string? FlushInput(int port)
    {
        var pending = _pendingInput[port];
        int queueIndex = ReceiveQueueOf(port);
        if (pending.Count == 0 || !_portReady[port] || queueIndex >= _queues.Length || _queues[queueIndex] is not { } queue)
        {
            return null;
        }

        var memory = _activation!.Memory;
        while (pending.Count > 0)
        {
            var result = queue.Pop(_chain);
            if (result == VirtqueuePopResult.Empty)
            {
                break;
            }

            if (result == VirtqueuePopResult.Broken)
            {
                return queue.Failure!.ToString();
            }

            int count = (int)Math.Min(Math.Min(_chain.WritableLength, (uint)pending.Count), (uint)_scratch.Length);
            for (int i = 0; i < count; i++)
            {
                _scratch[i] = pending.Dequeue();
            }

            if (!_chain.TryWriteWritable(memory, 0, _scratch.AsSpan(0, count)))
            {
                return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"console receive buffer of chain {_chain.HeadIndex} cannot be written").ToString();
            }

            if (!queue.TryPushUsed(_chain.HeadIndex, (uint)count))
            {
                return queue.Failure!.ToString();
            }

            Io.CountRead((uint)count);
        }

        return Notify(queue);
    }

    // Under _gate. Messages from the driver on the control transmit queue.
    private string? ServeControl()
    {
        var queue = _queues[ControlTransmitQueue]!;
        var memory = _activation!.Memory;
        Span<byte> raw = stackalloc byte[virtio_console_control.Size];
        while (true)
        {
            var result = queue.Pop(_chain);
            if (result == VirtqueuePopResult.Empty)
            {
                break;
            }

            if (result == VirtqueuePopResult.Broken)
            {
                return queue.Failure!.ToString();
            }

            // A message shorter than its header is ignored (the driver never sends one).
            if (_chain.TryReadReadable(memory, 0, raw))
            {
                uint id = BinaryPrimitives.ReadUInt32LittleEndian(raw);
                var kind = (VirtioConsoleControlEvent)BinaryPrimitives.ReadUInt16LittleEndian(raw[4..]);
                ushort value = BinaryPrimitives.ReadUInt16LittleEndian(raw[6..]);
                VirtioConsoleLog.ControlFromDriver(_logger, id, kind, value);
                HandleControl(id, kind, value);
            }

            if (!queue.TryPushUsed(_chain.HeadIndex, 0))
            {
                return queue.Failure!.ToString();
            }
        }

        return Notify(queue) ?? FlushControl();
    }

    private void HandleControl(uint id, VirtioConsoleControlEvent kind, ushort value)
    {
        switch (kind)
        {
            case VirtioConsoleControlEvent.VIRTIO_CONSOLE_DEVICE_READY when value == 1:
                for (uint port = 0; port <= _ports.Length; port++)
                {
                    QueueControl(port, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_ADD, 0);
                }

                break;
            case VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_READY when id <= _ports.Length:
                _portReady[id] = value == 1;
                if (value != 1)
                {
                    break;
                }

                if (id == 0)
                {
                    QueueControl(0, VirtioConsoleControlEvent.VIRTIO_CONSOLE_CONSOLE_PORT, 1);
                    QueueControl(0, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_OPEN, 1);
                }
                else
                {
                    var port = _ports[id - 1];
                    QueueControl(id, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_NAME, 1, Encoding.ASCII.GetBytes(port.Name));
                    if (port.Backend.IsConnected)
                    {
                        QueueControl(id, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_OPEN, 1);
                    }
                }

                FlushInputLater((int)id);
                break;
            case VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_OPEN when id <= _ports.Length:
                _guestOpen[id] = value == 1;
                break;
        }
    }

    private void FlushInputLater(int port) => _flushAfterControl |= 1UL << port;

    private void QueueControl(uint id, VirtioConsoleControlEvent kind, ushort value, byte[]? extra = null)
    {
        var message = new byte[virtio_console_control.Size + (extra?.Length ?? 0)];
        BinaryPrimitives.WriteUInt32LittleEndian(message, id);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(4), (ushort)kind);
        BinaryPrimitives.WriteUInt16LittleEndian(message.AsSpan(6), value);
        extra?.CopyTo(message, virtio_console_control.Size);
        _pendingControl.Enqueue(message);
    }

    // Under _gate. Pending control messages into the driver's control receive buffers; then input held for ports that just became ready.
    private string? FlushControl()
    {
        if (ControlReceiveQueue < _queues.Length && _queues[ControlReceiveQueue] is { } queue)
        {
            var memory = _activation!.Memory;
            bool used = false;
            while (_pendingControl.Count > 0)
            {
                var result = queue.Pop(_chain);
                if (result == VirtqueuePopResult.Empty)
                {
                    break;
                }

                if (result == VirtqueuePopResult.Broken)
                {
                    return queue.Failure!.ToString();
                }

                var message = _pendingControl.Dequeue();
                uint length = Math.Min((uint)message.Length, _chain.WritableLength);
                if (!_chain.TryWriteWritable(memory, 0, message.AsSpan(0, (int)length)))
                {
                    return queue.MarkBroken(VirtqueueErrorKind.OutsideGuestMemory, $"control buffer of chain {_chain.HeadIndex} cannot be written").ToString();
                }

                if (!queue.TryPushUsed(_chain.HeadIndex, length))
                {
                    return queue.Failure!.ToString();
                }

                used = true;
            }

            if (used && Notify(queue) is { } failure)
            {
                return failure;
            }
        }

        ulong ports = _flushAfterControl;
        _flushAfterControl = 0;
        for (int port = 0; ports != 0; port++, ports >>= 1)
        {
            if ((ports & 1) != 0 && FlushInput(port) is { } failure)
            {
                return failure;
            }
        }

        return null;
    }

    private void HostConnectionChanged(int port, bool connected)
    {
        string? reset = null;
        VirtioActivation? activation;
        lock (_gate)
        {
            activation = _activation;
            if (activation is null || !_multiport || !_portReady[port])
            {
                return;
            }

            QueueControl((uint)port, VirtioConsoleControlEvent.VIRTIO_CONSOLE_PORT_OPEN, (ushort)(connected ? 1 : 0));
            reset = FlushControl();
        }

        if (reset is not null)
        {
            ReportNeedsReset(activation, reset);
        }
    }

    // Under _gate.
    private string? Notify(SplitVirtqueue queue)
    {
        if (queue.ShouldNotify())
        {
            _activation!.Interrupt.NotifyQueue(queue.Index);
        }

        return queue.Failure?.ToString();
    }

    private void ReportNeedsReset(VirtioActivation activation, string reason)
    {
        lock (_gate)
        {
            if (_needsResetReported || _activation != activation)
            {
                return;
            }

            _needsResetReported = true;
        }

        VirtioConsoleLog.NeedsReset(_logger, reason);
        activation.Transport.MarkNeedsReset(reason);
    }
}
