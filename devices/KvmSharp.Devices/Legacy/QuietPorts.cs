using System.Collections.ObjectModel;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Legacy;

/// <summary>One range of ports <see cref="QuietPorts"/> answers for.</summary>
/// <param name="BasePort">First port of the range.</param>
/// <param name="Length">Number of ports (at least 1; the range must end at or below 0xffff).</param>
/// <param name="Name">What usually lives there, for diagnostics and as the bus registration name.</param>
public readonly record struct QuietPortRange(ushort BasePort, ushort Length, string Name);

/// <summary>
/// Answers the ports a Linux guest probes on a PC where this VM has no device, the way an empty ISA bus does:
/// reads float to 0xff ("absent") and writes are dropped. Registering them keeps these expected probes out of the
/// bus's stray-access counters, so those counters only show surprises; each port still has its own counter here.
/// </summary>
/// <remarks>
/// <para>A bus device only sees offsets, so each range is served by its own <see cref="QuietPortWindow"/> that
/// knows its base port. Register every window with the port bus in one loop:
/// <c>foreach (QuietPortWindow w in quiet.Windows) pio.Register(w.BasePort, w.Length, w, w.Name);</c></para>
/// <para>The one port with behaviour is 0x92, system control port A (when it is in the list): bit 1 (A20) reads
/// back as written and starts set; writing bit 0 set is a fast reset, which calls the reset callback; bit 0 then
/// reads back clear, as the pulse has been taken. Port 0xcf9 (the chipset reset register) is not given that
/// meaning: it sits inside the PCI configuration ports, which read as absent until there is a PCI host bridge.</para>
/// <para>Counting uses <see cref="Interlocked"/> operations and nothing allocates after construction.</para>
/// </remarks>
public sealed class QuietPorts
{
    /// <summary>System control port A: fast A20 gate (bit 1) and fast reset (bit 0).</summary>
    public const ushort SystemControlPortA = 0x92;

    private const byte SystemControlReset = 0x01;
    private const byte SystemControlA20 = 0x02;

    private readonly Action? _resetRequested;
    private readonly QuietPortWindow[] _windows;
    private long _totalAccesses;
    private int _systemControlA = SystemControlA20;

    /// <summary>Answer for <see cref="DefaultRanges"/>.</summary>
    /// <param name="resetRequested">Called on the vCPU thread when the guest writes port 0x92 with bit 0 set; null to ignore.</param>
    public QuietPorts(Action? resetRequested = null)
        : this(DefaultRanges, resetRequested)
    {
    }

    /// <summary>Answer for the given ranges.</summary>
    /// <param name="ranges">Ranges to serve; they must not overlap each other.</param>
    /// <param name="resetRequested">Called on the vCPU thread when the guest writes port 0x92 with bit 0 set; null to ignore.</param>
    /// <exception cref="ArgumentException">A range is empty, has no name, runs past port 0xffff, or overlaps another.</exception>
    public QuietPorts(IEnumerable<QuietPortRange> ranges, Action? resetRequested = null)
    {
        ArgumentNullException.ThrowIfNull(ranges);
        _resetRequested = resetRequested;
        var windows = new List<QuietPortWindow>();
        var names = new Dictionary<ushort, string>();
        foreach (QuietPortRange range in ranges)
        {
            ArgumentException.ThrowIfNullOrEmpty(range.Name, nameof(ranges));
            if (range.Length == 0 || range.BasePort + range.Length > 0x1_0000)
            {
                throw new ArgumentException(
                    $"Quiet port range '{range.Name}' at 0x{range.BasePort:x} with length {range.Length} is empty or runs past port 0xffff.",
                    nameof(ranges));
            }

            for (int port = range.BasePort; port < range.BasePort + range.Length; port++)
            {
                if (!names.TryAdd((ushort)port, range.Name))
                {
                    throw new ArgumentException(
                        $"Quiet port range '{range.Name}' overlaps '{names[(ushort)port]}' at port 0x{port:x}.", nameof(ranges));
                }
            }

            windows.Add(new QuietPortWindow(this, range));
        }

        _windows = [.. windows];
        Windows = Array.AsReadOnly(_windows);
        Names = new ReadOnlyDictionary<ushort, string>(names);
    }

    /// <summary>
    /// The ports a stock Linux kernel touches on a PC without devices behind them:
    /// 0x80 (POST code, written by the io_delay that follows many legacy port writes), 0xed (the alternative
    /// io_delay port), 0x92 (system control port A), the IDE primary (0x1f0-0x1f7, 0x3f6) and secondary
    /// (0x170-0x177, 0x376) channels, COM4 (0x2e8-0x2ef), COM2 (0x2f8-0x2ff), COM3 (0x3e8-0x3ef), LPT1
    /// (0x378-0x37a), VGA (0x3c0-0x3df) and the PCI configuration mechanism (0xcf8-0xcff), absent until there is
    /// a PCI host bridge. None of them overlaps COM1 (0x3f8), the i8042 (0x60-0x64), the RTC (0x70-0x71) or the
    /// ports KVM's in-kernel PIC, PIT and speaker port handle (0x20-0x21, 0x40-0x43, 0x61, 0xa0-0xa1, 0x4d0-0x4d1).
    /// </summary>
    public static IReadOnlyList<QuietPortRange> DefaultRanges { get; } = Array.AsReadOnly(new QuietPortRange[]
    {
        new(0x80, 1, "post-code"),
        new(0x92, 1, "system-control-a"),
        new(0xed, 1, "io-delay"),
        new(0x170, 8, "ide1"),
        new(0x1f0, 8, "ide0"),
        new(0x2e8, 8, "com4"),
        new(0x2f8, 8, "com2"),
        new(0x376, 1, "ide1-control"),
        new(0x378, 3, "lpt1"),
        new(0x3c0, 32, "vga"),
        new(0x3e8, 8, "com3"),
        new(0x3f6, 1, "ide0-control"),
        new(0xcf8, 8, "pci-config"),
    });

    /// <summary>One bus device per range, in the order the ranges were given.</summary>
    public IReadOnlyList<QuietPortWindow> Windows { get; }

    /// <summary>The name of the range each served port belongs to.</summary>
    public IReadOnlyDictionary<ushort, string> Names { get; }

    /// <summary>Accesses (reads and writes; a wider access counts once, at its first port) across all ranges.</summary>
    public long TotalAccesses => Interlocked.Read(ref _totalAccesses);

    /// <summary>Accesses whose first byte was <paramref name="port"/>; 0 for a port this device does not serve.</summary>
    public long AccessCount(ushort port)
    {
        foreach (QuietPortWindow window in _windows)
        {
            if (port >= window.BasePort && port - window.BasePort < window.Length)
            {
                return window.AccessCount(port - window.BasePort);
            }
        }

        return 0;
    }

    internal void CountAccess() => Interlocked.Increment(ref _totalAccesses);

    internal byte ReadSystemControlA() => (byte)Volatile.Read(ref _systemControlA);

    internal void WriteSystemControlA(byte value)
    {
        // Bit 0 pulses reset and is not kept; the other bits (A20 and chipset-specific ones) read back.
        Volatile.Write(ref _systemControlA, value & ~SystemControlReset);
        if ((value & SystemControlReset) != 0)
        {
            _resetRequested?.Invoke();
        }
    }
}

/// <summary>One range of <see cref="QuietPorts"/>, mapped on the port bus at <see cref="BasePort"/>.</summary>
public sealed class QuietPortWindow : IBusDevice
{
    private readonly QuietPorts _owner;
    private readonly long[] _counts;

    internal QuietPortWindow(QuietPorts owner, QuietPortRange range)
    {
        _owner = owner;
        BasePort = range.BasePort;
        Length = range.Length;
        Name = range.Name;
        _counts = new long[range.Length];
    }

    /// <summary>First port of the window.</summary>
    public ushort BasePort { get; }

    /// <summary>Number of ports in the window.</summary>
    public ushort Length { get; }

    /// <summary>Name to register the window under.</summary>
    public string Name { get; }

    /// <inheritdoc />
    /// <remarks>Reads 0xff in every byte, except that port 0x92 returns system control port A in the first byte.</remarks>
    public void Read(ulong offset, Span<byte> data)
    {
        data.Fill(0xff);
        if (!Count(offset) || data.IsEmpty)
        {
            return;
        }

        if (BasePort + (int)offset == QuietPorts.SystemControlPortA)
        {
            data[0] = _owner.ReadSystemControlA();
        }
    }

    /// <inheritdoc />
    /// <remarks>Dropped, except a write to port 0x92, whose first byte goes to system control port A.</remarks>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (!Count(offset) || data.IsEmpty)
        {
            return;
        }

        if (BasePort + (int)offset == QuietPorts.SystemControlPortA)
        {
            _owner.WriteSystemControlA(data[0]);
        }
    }

    internal long AccessCount(int offset) => Interlocked.Read(ref _counts[offset]);

    private bool Count(ulong offset)
    {
        if (offset >= Length)
        {
            return false;
        }

        Interlocked.Increment(ref _counts[offset]);
        _owner.CountAccess();
        return true;
    }
}
