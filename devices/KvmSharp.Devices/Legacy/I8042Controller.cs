using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Legacy;

/// <summary>
/// The PC's 8042 keyboard controller with a PS/2 keyboard behind it, seen through one 5-port window at
/// 0x60..0x64: offset 0 is the data port (0x60), offset 4 the status/command port (0x64), offset 1 is port 0x61
/// (system control port B: speaker gate and the refresh toggle), and offsets 2-3 (0x62, 0x63) read as absent.
/// </summary>
/// <remarks>
/// <para>It models what a Linux guest needs to find the controller at once and quietly, bind the AT keyboard
/// driver, reboot through the controller (reboot=k) and react to Ctrl-Alt-Del from the host:</para>
/// <list type="bullet">
/// <item>Commands complete at once, so the status register never reports the input buffer full (IBF) and drivers
/// never wait to write. The keylock bit reads as "not inhibited" (Linux warns "Keylock active" otherwise).</item>
/// <item>Controller replies (command byte, self-test 0x55, interface test 0x00, output port, ...) go to a small
/// controller queue that is read before anything from the keyboard; keyboard bytes (ACKs, ID, scancodes) wait in
/// the keyboard's own buffer and only reach the data port while the keyboard interface is enabled (command byte
/// bit 4 clear), as on the chip, where the controller holds the keyboard clock low while the interface is off.</item>
/// <item>The auxiliary (mouse) port is absent: its disable bit in the command byte always reads as set and 0xA8
/// cannot clear it, so Linux's "bit assignment test" ends the aux probe without a message after ~100 quick reads
/// of the command byte. 0xD3 (write aux output buffer) still loops the byte back flagged as aux data, because that
/// loop is internal to every PS/2 controller and answering it avoids a 500 ms timeout in the same probe.
/// Aux bytes never raise the keyboard IRQ, and there is no IRQ 12 line.</item>
/// <item>The keyboard answers the commands the AT keyboard driver sends (identify, LEDs, typematic, enable,
/// disable, defaults, reset, echo, scancode set, resend), with the identify and set replies translated as the
/// controller would when translation (command byte bit 6) is on.</item>
/// <item>The interrupt line follows "a non-aux byte is readable and the keyboard interrupt (command byte bit 0) is
/// enabled"; every data-port read drops it and raises it again if another byte is waiting, so each byte is a
/// fresh edge for an edge-triggered ISA IRQ 1.</item>
/// <item>The reset line (output port bit 0) is pulsed by commands 0xF0-0xFE with bit 0 clear (0xFE is the classic
/// one) and asserted by writing the output port (0xD1) with bit 0 clear. Either calls the reset callback; A20
/// gating (output port bit 1) is not modelled: A20 is always on.</item>
/// </list>
/// <para>A single lock guards the state because <see cref="SendCtrlAltDel"/> runs on a host thread; it does not
/// allocate when taken. The reset callback runs on the vCPU thread after the lock is released.</para>
/// </remarks>
public sealed class I8042Controller : IBusDevice
{
    /// <summary>Port the window starts at: register the controller at <see cref="BasePort"/> for <see cref="RegisterBlockLength"/> ports.</summary>
    public const ulong BasePort = 0x60;

    /// <summary>Ports 0x60..0x64 (data, port B, two absent ports, status/command).</summary>
    public const ulong RegisterBlockLength = 5;

    /// <summary>Depth of the keyboard's output buffer (and of the controller's reply queue).</summary>
    public const int BufferCapacity = 16;

    /// <summary>The command byte after power-on: translation on, aux disabled (absent), system flag, keyboard interrupt on.</summary>
    public const byte DefaultCommandByte = CtrTranslate | CtrAuxDisabled | CtrSystemFlag | CtrKeyboardInterrupt;

    private const int DataOffset = 0;
    private const int PortBOffset = 1;
    private const int StatusCommandOffset = 4;

    private const byte StatusOutputFull = 0x01;
    private const byte StatusSystemFlag = 0x04;
    private const byte StatusLastWriteWasCommand = 0x08;
    private const byte StatusKeyboardNotInhibited = 0x10;
    private const byte StatusAuxData = 0x20;

    private const byte CtrKeyboardInterrupt = 0x01;
    private const byte CtrSystemFlag = 0x04;
    private const byte CtrKeyboardDisabled = 0x10;
    private const byte CtrAuxDisabled = 0x20;
    private const byte CtrTranslate = 0x40;

    private const byte CmdReadRamFirst = 0x20;   // 0x20 reads the command byte, 0x21-0x3f the rest of the RAM
    private const byte CmdReadRamLast = 0x3f;
    private const byte CmdWriteRamFirst = 0x60;  // 0x60 writes the command byte, 0x61-0x7f the rest of the RAM
    private const byte CmdWriteRamLast = 0x7f;
    private const byte CmdPasswordInstalled = 0xa4;
    private const byte CmdDisableAux = 0xa7;
    private const byte CmdEnableAux = 0xa8;
    private const byte CmdAuxInterfaceTest = 0xa9;
    private const byte CmdSelfTest = 0xaa;
    private const byte CmdKeyboardInterfaceTest = 0xab;
    private const byte CmdDisableKeyboard = 0xad;
    private const byte CmdEnableKeyboard = 0xae;
    private const byte CmdReadInputPort = 0xc0;
    private const byte CmdReadOutputPort = 0xd0;
    private const byte CmdWriteOutputPort = 0xd1;
    private const byte CmdWriteKeyboardOutput = 0xd2;
    private const byte CmdWriteAuxOutput = 0xd3;
    private const byte CmdWriteAux = 0xd4;
    private const byte CmdReadTestInputs = 0xe0;
    private const byte CmdPulseOutputFirst = 0xf0; // 0xf0-0xff pulse the output port bits whose command bit is 0

    private const byte ReplySelfTestPassed = 0x55;
    private const byte ReplyInterfaceOk = 0x00;
    private const byte ReplyAuxClockStuckLow = 0x01; // the aux port is absent: there is no clock line to test
    private const byte ReplyNoPassword = 0xf1;
    private const byte InputPortKeyboardNotInhibited = 0x80;

    private const byte OutputPortReset = 0x01;        // active low: 0 holds the CPU in reset
    private const byte OutputPortKeyboardFull = 0x10;  // mirrors IRQ 1
    private const byte OutputPortAuxFull = 0x20;       // mirrors IRQ 12
    private const byte DefaultOutputPort = 0xcf;       // reset released, A20 on, keyboard clock and data high

    private const byte PortBWritableBits = 0x0f;       // timer 2 gate, speaker data, parity and channel check disables
    private const byte PortBToggleBits = 0x30;         // refresh toggle and timer 2 output (see ReadPortB)

    private const byte KbdSetLeds = 0xed;
    private const byte KbdEcho = 0xee;
    private const byte KbdScanCodeSet = 0xf0;
    private const byte KbdIdentify = 0xf2;
    private const byte KbdSetTypematic = 0xf3;
    private const byte KbdEnableScanning = 0xf4;
    private const byte KbdDefaultDisable = 0xf5;
    private const byte KbdSetDefault = 0xf6;
    private const byte KbdSetKeyTypeFirst = 0xf7;      // 0xf7-0xfd: set 3 key types; acknowledged and ignored
    private const byte KbdSetKeyTypeLast = 0xfd;
    private const byte KbdResend = 0xfe;
    private const byte KbdReset = 0xff;

    private const byte KbdReplyAck = 0xfa;
    private const byte KbdReplyResend = 0xfe;
    private const byte KbdReplySelfTestPassed = 0xaa;
    private const byte KbdReplyEcho = 0xee;
    private const byte KbdIdFirst = 0xab;
    private const byte KbdIdSecond = 0x83;
    private const byte KbdIdSecondTranslated = 0x41;   // 0x83 through the set 2 to set 1 translation
    private const byte DefaultScanCodeSet = 2;

    private const ushort AuxFlag = 0x100;              // marks a queued byte as aux data
    private const int ControllerRamSize = 32;

    private readonly Lock _lock = new();
    private readonly Action _resetRequested;
    private readonly IInterruptLine? _keyboardInterrupt;
    private readonly byte[] _ram = new byte[ControllerRamSize];
    private readonly ByteQueue _controllerOutput = new(BufferCapacity);
    private readonly ByteQueue _keyboardOutput = new(BufferCapacity);
    private byte _outputPort = DefaultOutputPort;
    private byte _pendingCommand;
    private bool _lastWriteWasCommand;
    private byte _lastDataRead;
    private byte _portB;
    private bool _portBToggle;
    private bool _interruptAsserted;

    // Keyboard state.
    private byte _keyboardPendingCommand;
    private bool _scanning = true;
    private byte _scanCodeSet = DefaultScanCodeSet;
    private byte _lastKeyboardByte = KbdReplyAck;

    /// <param name="resetRequested">Called on the vCPU thread when the guest pulses or asserts the reset line
    /// (command 0xFE, or output port bit 0 cleared through 0xD1); the VMM ends or restarts the VM. Linux's
    /// reboot=k writes 0xFE up to ten times, so the callback must tolerate being called again before the VM stops.</param>
    /// <param name="keyboardInterrupt">The keyboard's IRQ 1 output, or null to run polled.</param>
    public I8042Controller(Action resetRequested, IInterruptLine? keyboardInterrupt = null)
    {
        ArgumentNullException.ThrowIfNull(resetRequested);
        _resetRequested = resetRequested;
        _keyboardInterrupt = keyboardInterrupt;
        _ram[0] = DefaultCommandByte;
    }

    /// <summary>The controller command byte (RAM byte 0) as the guest last left it; for diagnostics.</summary>
    public byte CommandByte
    {
        get
        {
            lock (_lock)
            {
                return _ram[0];
            }
        }
    }

    /// <summary>
    /// Press and release Ctrl-Alt-Del on the keyboard: make codes for Ctrl, Alt and Delete, then their break codes,
    /// in scancode set 1 when the controller translates (command byte bit 6, Linux's default) and otherwise in the
    /// keyboard's own set (2 unless the guest chose another). Raises the keyboard IRQ when the guest can see the
    /// bytes. Thread-safe; meant for a host thread asking the guest to shut down (Linux reboots on it, and the
    /// reboot then reaches the reset callback).
    /// </summary>
    /// <returns>false if nothing was queued: the guest has not enabled (or has disabled) keyboard scanning, or the
    /// keyboard buffer has no room for the whole sequence.</returns>
    public bool SendCtrlAltDel()
    {
        lock (_lock)
        {
            if (!_scanning)
            {
                return false;
            }

            ReadOnlySpan<byte> codes = CtrlAltDelCodes();
            if (_keyboardOutput.FreeSpace < codes.Length)
            {
                return false;
            }

            foreach (byte code in codes)
            {
                KeyboardSend(code);
            }

            UpdateInterruptLine();
            return true;
        }
    }

    /// <inheritdoc />
    /// <remarks>Registers are one byte wide: a wider read returns the register in the first byte and zeros after it.
    /// Offsets 2 and 3 (ports 0x62, 0x63) read as absent (0xff).</remarks>
    public void Read(ulong offset, Span<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        data.Clear();
        switch (offset)
        {
            case DataOffset:
                lock (_lock)
                {
                    data[0] = ReadData();
                }

                break;
            case PortBOffset:
                lock (_lock)
                {
                    data[0] = ReadPortB();
                }

                break;
            case StatusCommandOffset:
                lock (_lock)
                {
                    data[0] = ReadStatus();
                }

                break;
            default:
                data.Fill(0xff);
                break;
        }
    }

    /// <inheritdoc />
    /// <remarks>Registers are one byte wide: only the first byte of a wider write is used.</remarks>
    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty)
        {
            return;
        }

        bool reset;
        switch (offset)
        {
            case DataOffset:
                lock (_lock)
                {
                    reset = WriteData(data[0]);
                }

                break;
            case PortBOffset:
                lock (_lock)
                {
                    _portB = (byte)(data[0] & PortBWritableBits);
                }

                return;
            case StatusCommandOffset:
                lock (_lock)
                {
                    reset = WriteCommand(data[0]);
                }

                break;
            default:
                return;
        }

        // Outside the lock: the VMM may stop vCPUs or call back into the device from here.
        if (reset)
        {
            _resetRequested();
        }
    }

    private bool KeyboardInterfaceEnabled => (_ram[0] & CtrKeyboardDisabled) == 0;

    private bool Translating => (_ram[0] & CtrTranslate) != 0;

    private bool HasOutput => _controllerOutput.Count > 0 || (KeyboardInterfaceEnabled && _keyboardOutput.Count > 0);

    // Only valid when HasOutput.
    private ushort PeekOutput() => _controllerOutput.Count > 0 ? _controllerOutput.Peek() : _keyboardOutput.Peek();

    private byte ReadStatus()
    {
        byte status = StatusKeyboardNotInhibited;
        if ((_ram[0] & CtrSystemFlag) != 0)
        {
            status |= StatusSystemFlag;
        }

        if (_lastWriteWasCommand)
        {
            status |= StatusLastWriteWasCommand;
        }

        if (HasOutput)
        {
            status |= StatusOutputFull;
            if ((PeekOutput() & AuxFlag) != 0)
            {
                status |= StatusAuxData;
            }
        }

        return status;
    }

    private byte ReadData()
    {
        if (_controllerOutput.Count > 0)
        {
            _lastDataRead = (byte)_controllerOutput.Dequeue();
        }
        else if (KeyboardInterfaceEnabled && _keyboardOutput.Count > 0)
        {
            _lastDataRead = (byte)_keyboardOutput.Dequeue();
        }

        // An empty read returns the last byte again, as the chip's output register does.
        // Reading empties the output register, which drops IRQ 1; the next byte then makes a new edge.
        if (_interruptAsserted)
        {
            _interruptAsserted = false;
            _keyboardInterrupt?.SetLevel(false);
        }

        UpdateInterruptLine();
        return _lastDataRead;
    }

    // Bit 4 is the DRAM refresh toggle, which flips every 15 µs on a PC; here it flips on every read so any poll
    // for either level ends. Bit 5 is timer 2's output: there is no PIT channel 2 behind this port (when the
    // in-kernel PIT is created with KVM_PIT_SPEAKER_DUMMY, KVM answers port 0x61 itself, with the real gate and
    // output, and this code never runs), so it toggles with bit 4 rather than leave a guest spinning on it.
    // Bits 6-7 (IOCHK, SERR: NMI reasons) are never set.
    private byte ReadPortB()
    {
        _portBToggle = !_portBToggle;
        return (byte)(_portB | (_portBToggle ? PortBToggleBits : 0));
    }

    private bool WriteCommand(byte command)
    {
        _lastWriteWasCommand = true;
        _pendingCommand = 0;
        bool reset = false;
        switch (command)
        {
            case >= CmdReadRamFirst and <= CmdReadRamLast:
                ReplyFromController(_ram[command - CmdReadRamFirst]);
                break;
            case >= CmdWriteRamFirst and <= CmdWriteRamLast:
            case CmdWriteOutputPort:
            case CmdWriteKeyboardOutput:
            case CmdWriteAuxOutput:
            case CmdWriteAux:
                _pendingCommand = command;
                break;
            case CmdPasswordInstalled:
                ReplyFromController(ReplyNoPassword);
                break;
            case CmdDisableAux:
                _ram[0] |= CtrAuxDisabled;
                break;
            case CmdEnableAux:
                // The aux port is absent: its disable bit stays set.
                break;
            case CmdAuxInterfaceTest:
                ReplyFromController(ReplyAuxClockStuckLow);
                break;
            case CmdSelfTest:
                _ram[0] |= CtrSystemFlag;
                ReplyFromController(ReplySelfTestPassed);
                break;
            case CmdKeyboardInterfaceTest:
                ReplyFromController(ReplyInterfaceOk);
                break;
            case CmdDisableKeyboard:
                _ram[0] |= CtrKeyboardDisabled;
                break;
            case CmdEnableKeyboard:
                _ram[0] = (byte)(_ram[0] & ~CtrKeyboardDisabled);
                break;
            case CmdReadInputPort:
                ReplyFromController(InputPortKeyboardNotInhibited);
                break;
            case CmdReadOutputPort:
                ReplyFromController(ReadOutputPort());
                break;
            case CmdReadTestInputs:
                ReplyFromController(0x00);
                break;
            case >= CmdPulseOutputFirst:
                // Each of bits 0-3 that is 0 in the command pulses that output port bit low; bit 0 is the reset line.
                reset = (command & OutputPortReset) == 0;
                break;
            default:
                // Vendor and obsolete commands are ignored.
                break;
        }

        UpdateInterruptLine();
        return reset;
    }

    private bool WriteData(byte value)
    {
        _lastWriteWasCommand = false;
        byte command = _pendingCommand;
        _pendingCommand = 0;
        bool reset = false;
        switch (command)
        {
            case 0:
                KeyboardReceive(value);
                break;
            case >= CmdWriteRamFirst and <= CmdWriteRamLast:
                WriteRam(command - CmdWriteRamFirst, value);
                break;
            case CmdWriteOutputPort:
                _outputPort = value;
                reset = (value & OutputPortReset) == 0;
                break;
            case CmdWriteKeyboardOutput:
                ReplyFromController(value);
                break;
            case CmdWriteAuxOutput:
                _controllerOutput.TryEnqueue((ushort)(value | AuxFlag));
                break;
            default:
                // CmdWriteAux: there is no aux device to receive the byte.
                break;
        }

        UpdateInterruptLine();
        return reset;
    }

    private void WriteRam(int index, byte value)
    {
        if (index == 0)
        {
            // The aux port is absent, so its disable bit reads back set whatever the guest writes.
            value |= CtrAuxDisabled;
        }

        _ram[index] = value;
    }

    private byte ReadOutputPort()
    {
        byte value = (byte)(_outputPort & ~(OutputPortKeyboardFull | OutputPortAuxFull));
        if (HasOutput)
        {
            value |= (PeekOutput() & AuxFlag) != 0 ? OutputPortAuxFull : OutputPortKeyboardFull;
        }

        return value;
    }

    private void ReplyFromController(byte value) => _controllerOutput.TryEnqueue(value);

    // The keyboard got a byte from the guest: a command, or the parameter of the previous one.
    private void KeyboardReceive(byte value)
    {
        byte pending = _keyboardPendingCommand;
        if (pending != 0)
        {
            _keyboardPendingCommand = 0;
            KeyboardReceiveParameter(pending, value);
            return;
        }

        switch (value)
        {
            case KbdSetLeds:
            case KbdSetTypematic:
            case KbdScanCodeSet:
                _keyboardPendingCommand = value;
                KeyboardSend(KbdReplyAck);
                break;
            case KbdEcho:
                KeyboardSend(KbdReplyEcho);
                break;
            case KbdIdentify:
                KeyboardSend(KbdReplyAck);
                KeyboardSend(KbdIdFirst);
                KeyboardSend(Translating ? KbdIdSecondTranslated : KbdIdSecond);
                break;
            case KbdEnableScanning:
                _scanning = true;
                KeyboardSend(KbdReplyAck);
                break;
            case KbdDefaultDisable:
                KeyboardSetDefaults();
                _scanning = false;
                KeyboardSend(KbdReplyAck);
                break;
            case KbdSetDefault:
                KeyboardSetDefaults();
                _scanning = true;
                KeyboardSend(KbdReplyAck);
                break;
            case >= KbdSetKeyTypeFirst and <= KbdSetKeyTypeLast:
                KeyboardSend(KbdReplyAck);
                break;
            case KbdResend:
                KeyboardSend(_lastKeyboardByte);
                break;
            case KbdReset:
                KeyboardSetDefaults();
                _scanning = true;
                KeyboardSend(KbdReplyAck);
                KeyboardSend(KbdReplySelfTestPassed);
                break;
            default:
                KeyboardSend(KbdReplyResend);
                break;
        }
    }

    private void KeyboardReceiveParameter(byte command, byte value)
    {
        switch (command)
        {
            case KbdSetLeds:
            case KbdSetTypematic:
                // There are no LEDs and no key repeat to drive; the keyboard only acknowledges.
                KeyboardSend(KbdReplyAck);
                break;
            default: // KbdScanCodeSet
                if (value == 0)
                {
                    KeyboardSend(KbdReplyAck);
                    KeyboardSend(ScanCodeSetReply());
                }
                else if (value <= 3)
                {
                    _scanCodeSet = value;
                    KeyboardSend(KbdReplyAck);
                }
                else
                {
                    KeyboardSend(KbdReplyResend);
                }

                break;
        }
    }

    // Reset, "set default" and "default disable" empty the keyboard's buffer and restore the power-on scancode set.
    private void KeyboardSetDefaults()
    {
        _keyboardOutput.Clear();
        _scanCodeSet = DefaultScanCodeSet;
    }

    // The set number as the guest reads it: with translation on, 1/2/3 come out as 0x43/0x41/0x3f.
    private byte ScanCodeSetReply()
    {
        if (!Translating)
        {
            return _scanCodeSet;
        }

        return _scanCodeSet switch
        {
            1 => 0x43,
            3 => 0x3f,
            _ => 0x41,
        };
    }

    private ReadOnlySpan<byte> CtrlAltDelCodes()
    {
        if (Translating)
        {
            return CtrlAltDelSet1;
        }

        return _scanCodeSet switch
        {
            1 => CtrlAltDelSet1,
            3 => CtrlAltDelSet3,
            _ => CtrlAltDelSet2,
        };
    }

    // Left Ctrl, left Alt, Delete pressed, then released in the same order.
    private static ReadOnlySpan<byte> CtrlAltDelSet1 => [0x1d, 0x38, 0xe0, 0x53, 0x9d, 0xb8, 0xe0, 0xd3];

    private static ReadOnlySpan<byte> CtrlAltDelSet2 => [0x14, 0x11, 0xe0, 0x71, 0xf0, 0x14, 0xf0, 0x11, 0xe0, 0xf0, 0x71];

    private static ReadOnlySpan<byte> CtrlAltDelSet3 => [0x11, 0x19, 0x64, 0xf0, 0x11, 0xf0, 0x19, 0xf0, 0x64];

    // A full keyboard buffer drops the byte, as a keyboard whose host never clocks data out eventually does.
    private void KeyboardSend(byte value)
    {
        _lastKeyboardByte = value;
        _keyboardOutput.TryEnqueue(value);
    }

    // Called under the lock after every state change so levels reach the line in the order they happened.
    private void UpdateInterruptLine()
    {
        bool asserted = (_ram[0] & CtrKeyboardInterrupt) != 0
            && HasOutput
            && (PeekOutput() & AuxFlag) == 0;
        if (asserted == _interruptAsserted)
        {
            return;
        }

        _interruptAsserted = asserted;
        _keyboardInterrupt?.SetLevel(asserted);
    }

    /// <summary>A fixed-size FIFO of queued output bytes (with the aux flag in bit 8); never allocates after construction.</summary>
    private sealed class ByteQueue(int capacity)
    {
        private readonly ushort[] _items = new ushort[capacity];
        private int _head;

        public int Count { get; private set; }

        public int FreeSpace => _items.Length - Count;

        public bool TryEnqueue(ushort value)
        {
            if (Count == _items.Length)
            {
                return false;
            }

            _items[(_head + Count) % _items.Length] = value;
            Count++;
            return true;
        }

        public ushort Peek() => _items[_head];

        public ushort Dequeue()
        {
            ushort value = _items[_head];
            _head = (_head + 1) % _items.Length;
            Count--;
            return value;
        }

        public void Clear()
        {
            _head = 0;
            Count = 0;
        }
    }
}
