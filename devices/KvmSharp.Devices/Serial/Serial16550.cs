using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Serial;

/// <summary>
/// A 16550A UART (the PC COM port) seen through its 8 byte-wide registers.
/// </summary>
/// <remarks>
/// Transmission is instantaneous: a THR write reaches the sink (or, in loopback, the receive FIFO) at once, so
/// THRE and TEMT always read as set. There is no baud-rate timing, so received data is reported as soon as one
/// byte is in the FIFO (guests treat that like a FIFO timeout interrupt) and the FIFO trigger level is ignored.
/// The receive FIFO holds 16 bytes whether or not the guest enabled FIFO mode, so host input is not lost when a
/// guest polls in 16450 mode. A single uncontended lock guards the state because host input arrives on another
/// thread; <see cref="System.Threading.Lock"/> does not allocate when taken.
/// </remarks>
public sealed class Serial16550 : IBusDevice, IConsoleInput
{
    /// <summary>Number of register offsets to map on the bus (e.g. 0x3f8..0x3ff for COM1).</summary>
    public const ulong RegisterBlockLength = 8;

    /// <summary>Depth of the receive FIFO.</summary>
    public const int ReceiveFifoCapacity = 16;

    // Register offsets. Offsets 0 and 1 are the divisor latch while LCR.DLAB is set.
    private const int DataOffset = 0;            // RBR (read) / THR (write) / DLL
    private const int InterruptEnableOffset = 1; // IER / DLM
    private const int InterruptIdOffset = 2;     // IIR (read) / FCR (write)
    private const int LineControlOffset = 3;
    private const int ModemControlOffset = 4;
    private const int LineStatusOffset = 5;
    private const int ModemStatusOffset = 6;
    private const int ScratchOffset = 7;

    private const byte IerReceivedData = 0x01;
    private const byte IerTransmitterEmpty = 0x02;
    private const byte IerLineStatus = 0x04;
    private const byte IerModemStatus = 0x08;
    private const byte IerWritableBits = 0x0f; // upper bits are reserved on a 16550A; Linux probes them to tell UARTs apart

    private const byte IirNoInterrupt = 0x01;
    private const byte IirLineStatus = 0x06;
    private const byte IirReceivedData = 0x04;
    private const byte IirTransmitterEmpty = 0x02;
    private const byte IirModemStatus = 0x00;
    private const byte IirFifosEnabled = 0xc0;

    private const byte FcrEnableFifos = 0x01;
    private const byte FcrClearReceiveFifo = 0x02;

    private const byte LcrDivisorLatchAccess = 0x80;

    private const byte McrDtr = 0x01;
    private const byte McrRts = 0x02;
    private const byte McrOut1 = 0x04;
    private const byte McrOut2 = 0x08;
    private const byte McrLoopback = 0x10;
    private const byte McrWritableBits = 0x1f;

    private const byte LsrDataReady = 0x01;
    private const byte LsrOverrunError = 0x02;
    private const byte LsrTransmitterHoldingEmpty = 0x20;
    private const byte LsrTransmitterEmpty = 0x40;

    private const byte MsrDeltaCts = 0x01;
    private const byte MsrDeltaDsr = 0x02;
    private const byte MsrTrailingEdgeRi = 0x04;
    private const byte MsrDeltaDcd = 0x08;
    private const byte MsrDeltaBits = 0x0f;
    private const byte MsrCts = 0x10;
    private const byte MsrDsr = 0x20;
    private const byte MsrRi = 0x40;
    private const byte MsrDcd = 0x80;
    private const byte MsrLineBits = 0xf0;

    // Outside loopback the port looks cabled to a ready modem, which is what guests expect of a console.
    private const byte MsrLinesWhenConnected = MsrCts | MsrDsr | MsrDcd;

    // 115200 / 12 = 9600 baud, the usual firmware default.
    private const byte DefaultDivisorLow = 12;

    private readonly Lock _lock = new();
    private readonly ISerialSink _sink;
    private readonly IInterruptLine? _interruptLine;
    private readonly byte[] _receiveFifo = new byte[ReceiveFifoCapacity];
    private int _receiveHead;
    private int _receiveCount;
    private byte _interruptEnable;
    private byte _lineControl;
    private byte _modemControl;
    private byte _modemStatus = MsrLinesWhenConnected;
    private byte _lineErrors;
    private byte _scratch;
    private byte _divisorLow = DefaultDivisorLow;
    private byte _divisorHigh;
    private bool _fifosEnabled;
    private bool _transmitterEmptyInterruptPending;
    private bool _interruptLineAsserted;

    /// <param name="sink">Receives transmitted bytes when not in loopback.</param>
    /// <param name="interruptLine">The UART's IRQ output, or null to run polled.</param>
    public Serial16550(ISerialSink sink, IInterruptLine? interruptLine = null)
    {
        ArgumentNullException.ThrowIfNull(sink);
        _sink = sink;
        _interruptLine = interruptLine;
    }

    /// <summary>Free slots in the receive FIFO; lets a host input pump pace itself instead of overrunning the guest.</summary>
    public int ReceiveFifoFreeSpace
    {
        get
        {
            lock (_lock)
            {
                return ReceiveFifoCapacity - _receiveCount;
            }
        }
    }

    /// <summary>Deliver one byte from the host to the receiver. Thread-safe.</summary>
    /// <returns>false if the byte was lost: the FIFO was full (LSR.OE is set) or the UART is in loopback,
    /// where the serial input pin is disconnected.</returns>
    public bool EnqueueInput(byte value)
    {
        lock (_lock)
        {
            if (IsLoopback)
            {
                return false;
            }

            bool accepted = ReceiveByte(value);
            UpdateInterruptLine();
            return accepted;
        }
    }

    /// <summary>Deliver several bytes from the host, in order. Thread-safe.</summary>
    /// <returns>How many bytes were stored; the rest were lost as in <see cref="EnqueueInput(byte)"/>.</returns>
    public int EnqueueInput(ReadOnlySpan<byte> values)
    {
        lock (_lock)
        {
            if (IsLoopback)
            {
                return 0;
            }

            int accepted = 0;
            foreach (byte value in values)
            {
                if (ReceiveByte(value))
                {
                    accepted++;
                }
            }

            UpdateInterruptLine();
            return accepted;
        }
    }

    /// <inheritdoc />
    /// <remarks>Registers are one byte wide: a wider read returns the register in the first byte and zeros after it.</remarks>
    public void Read(ulong offset, Span<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        data.Clear();
        if (offset >= RegisterBlockLength)
        {
            return;
        }

        lock (_lock)
        {
            data[0] = ReadRegister((int)offset);
        }
    }

    /// <inheritdoc />
    /// <remarks>Registers are one byte wide: only the first byte of a wider write is used.</remarks>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty || offset >= RegisterBlockLength)
        {
            return;
        }

        lock (_lock)
        {
            WriteRegister((int)offset, data[0]);
        }
    }

    private bool IsLoopback => (_modemControl & McrLoopback) != 0;

    private bool IsDivisorLatchAccess => (_lineControl & LcrDivisorLatchAccess) != 0;

    private byte ReadRegister(int offset)
    {
        switch (offset)
        {
            case DataOffset:
                return IsDivisorLatchAccess ? _divisorLow : ReadReceiveBuffer();
            case InterruptEnableOffset:
                return IsDivisorLatchAccess ? _divisorHigh : _interruptEnable;
            case InterruptIdOffset:
                return ReadInterruptIdentification();
            case LineControlOffset:
                return _lineControl;
            case ModemControlOffset:
                return _modemControl;
            case LineStatusOffset:
                return ReadLineStatus();
            case ModemStatusOffset:
                return ReadModemStatus();
            default:
                return _scratch;
        }
    }

    private void WriteRegister(int offset, byte value)
    {
        switch (offset)
        {
            case DataOffset:
                if (IsDivisorLatchAccess)
                {
                    _divisorLow = value;
                }
                else
                {
                    Transmit(value);
                }

                break;
            case InterruptEnableOffset:
                if (IsDivisorLatchAccess)
                {
                    _divisorHigh = value;
                }
                else
                {
                    WriteInterruptEnable(value);
                }

                break;
            case InterruptIdOffset:
                WriteFifoControl(value);
                break;
            case LineControlOffset:
                _lineControl = value;
                break;
            case ModemControlOffset:
                _modemControl = (byte)(value & McrWritableBits);
                UpdateModemStatusLines();
                UpdateInterruptLine();
                break;
            case ScratchOffset:
                _scratch = value;
                break;
            default:
                // LSR and MSR are read-only (LSR writes are a factory test mode).
                break;
        }
    }

    private byte ReadReceiveBuffer()
    {
        if (_receiveCount == 0)
        {
            return 0;
        }

        byte value = _receiveFifo[_receiveHead];
        _receiveHead = (_receiveHead + 1) % ReceiveFifoCapacity;
        _receiveCount--;
        UpdateInterruptLine();
        return value;
    }

    private byte ReadInterruptIdentification()
    {
        byte pending = HighestPendingInterrupt();

        // Reading IIR acknowledges a THR-empty interrupt, but only when that is the source it reports.
        if (pending == IirTransmitterEmpty)
        {
            _transmitterEmptyInterruptPending = false;
            UpdateInterruptLine();
        }

        return (byte)(pending | (_fifosEnabled ? IirFifosEnabled : 0));
    }

    private byte ReadLineStatus()
    {
        byte status = (byte)(LsrTransmitterHoldingEmpty | LsrTransmitterEmpty | _lineErrors);
        if (_receiveCount > 0)
        {
            status |= LsrDataReady;
        }

        // Error bits report once: reading LSR clears them and with them the line status interrupt.
        if (_lineErrors != 0)
        {
            _lineErrors = 0;
            UpdateInterruptLine();
        }

        return status;
    }

    private byte ReadModemStatus()
    {
        byte status = _modemStatus;
        if ((status & MsrDeltaBits) != 0)
        {
            _modemStatus = (byte)(status & MsrLineBits);
            UpdateInterruptLine();
        }

        return status;
    }

    private void Transmit(byte value)
    {
        // Writing THR acknowledges a THR-empty interrupt; the line drops before the byte leaves.
        _transmitterEmptyInterruptPending = false;
        UpdateInterruptLine();
        try
        {
            if (IsLoopback)
            {
                ReceiveByte(value);
            }
            else
            {
                _sink.Write(value);
            }
        }
        finally
        {
            // The byte left at once, so THR is empty again and the transmitter asks for the next one, as the chip
            // does after a character time. Without this, drivers that refill THR from the interrupt would stall.
            if ((_interruptEnable & IerTransmitterEmpty) != 0)
            {
                _transmitterEmptyInterruptPending = true;
            }

            UpdateInterruptLine();
        }
    }

    private void WriteInterruptEnable(byte value)
    {
        byte enabled = (byte)(value & IerWritableBits);
        byte changed = (byte)(enabled ^ _interruptEnable);
        _interruptEnable = enabled;

        // THR is always empty, so enabling the THR-empty interrupt raises it at once and disabling it drops it.
        if ((changed & IerTransmitterEmpty) != 0)
        {
            _transmitterEmptyInterruptPending = (enabled & IerTransmitterEmpty) != 0;
        }

        UpdateInterruptLine();
    }

    private void WriteFifoControl(byte value)
    {
        bool enable = (value & FcrEnableFifos) != 0;
        if (enable != _fifosEnabled)
        {
            // Switching FIFO mode on or off empties both FIFOs.
            ClearReceiveFifo();
        }
        else if (enable && (value & FcrClearReceiveFifo) != 0)
        {
            // The other FCR bits are only honoured while FIFOs are enabled.
            ClearReceiveFifo();
        }

        // FCR bit 2 (clear transmit FIFO) needs no work: the transmit FIFO is always empty.
        _fifosEnabled = enable;
        UpdateInterruptLine();
    }

    private void ClearReceiveFifo()
    {
        _receiveHead = 0;
        _receiveCount = 0;
    }

    private bool ReceiveByte(byte value)
    {
        if (_receiveCount == ReceiveFifoCapacity)
        {
            // Overrun: the FIFO keeps its contents and the new character is lost.
            _lineErrors |= LsrOverrunError;
            return false;
        }

        _receiveFifo[(_receiveHead + _receiveCount) % ReceiveFifoCapacity] = value;
        _receiveCount++;
        return true;
    }

    // In loopback the modem inputs are wired to the MCR outputs (16550 datasheet): DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
    private void UpdateModemStatusLines()
    {
        byte lines = MsrLinesWhenConnected;
        if (IsLoopback)
        {
            lines = 0;
            if ((_modemControl & McrDtr) != 0) lines |= MsrDsr;
            if ((_modemControl & McrRts) != 0) lines |= MsrCts;
            if ((_modemControl & McrOut1) != 0) lines |= MsrRi;
            if ((_modemControl & McrOut2) != 0) lines |= MsrDcd;
        }

        byte previous = (byte)(_modemStatus & MsrLineBits);
        byte changed = (byte)(previous ^ lines);
        byte deltas = (byte)(_modemStatus & MsrDeltaBits);
        if ((changed & MsrCts) != 0) deltas |= MsrDeltaCts;
        if ((changed & MsrDsr) != 0) deltas |= MsrDeltaDsr;
        if ((changed & MsrDcd) != 0) deltas |= MsrDeltaDcd;
        if ((previous & MsrRi) != 0 && (lines & MsrRi) == 0) deltas |= MsrTrailingEdgeRi;
        _modemStatus = (byte)(lines | deltas);
    }

    private byte HighestPendingInterrupt()
    {
        if ((_interruptEnable & IerLineStatus) != 0 && _lineErrors != 0)
        {
            return IirLineStatus;
        }

        if ((_interruptEnable & IerReceivedData) != 0 && _receiveCount > 0)
        {
            return IirReceivedData;
        }

        if ((_interruptEnable & IerTransmitterEmpty) != 0 && _transmitterEmptyInterruptPending)
        {
            return IirTransmitterEmpty;
        }

        if ((_interruptEnable & IerModemStatus) != 0 && (_modemStatus & MsrDeltaBits) != 0)
        {
            return IirModemStatus;
        }

        return IirNoInterrupt;
    }

    // On PCs the UART's INTR pin reaches the interrupt controller through a buffer enabled by the OUT2 pin, and in
    // loopback the OUT2 pin is forced inactive, so the IRQ is only visible with OUT2 set and loopback off.
    // Called under the lock after every state change so levels reach the line in the order they happened.
    private void UpdateInterruptLine()
    {
        bool asserted = (_modemControl & (McrOut2 | McrLoopback)) == McrOut2
            && HighestPendingInterrupt() != IirNoInterrupt;
        if (asserted == _interruptLineAsserted)
        {
            return;
        }

        _interruptLineAsserted = asserted;
        _interruptLine?.SetLevel(asserted);
    }
}
