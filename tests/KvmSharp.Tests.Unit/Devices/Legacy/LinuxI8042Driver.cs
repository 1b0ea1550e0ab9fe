using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

/// <summary>
/// The port-level behaviour of Linux 6.1's i8042 driver (drivers/input/serio/i8042.c) and of the AT keyboard
/// driver's PS/2 commands, transcribed so tests drive the controller exactly as a booting kernel does. Every
/// message the driver would print at warning or error level lands in <see cref="Messages"/>, every wait that
/// needed to poll more than once is counted, and interrupts are taken from an edge-latching IRQ 1.
/// </summary>
internal sealed class LinuxI8042Driver(DeviceBus bus, EdgeLatchingInterruptLine keyboardIrq)
{
    // i8042-io.h / i8042.h
    public const ushort DataReg = 0x60;
    public const ushort StatusReg = 0x64;
    public const ushort CommandReg = 0x64;

    public const byte StrObf = 0x01;
    public const byte StrIbf = 0x02;
    public const byte StrKeylock = 0x10;
    public const byte StrAuxData = 0x20;

    public const byte CtrKbdInt = 0x01;
    public const byte CtrAuxInt = 0x02;
    public const byte CtrIgnKeylock = 0x08;
    public const byte CtrKbdDis = 0x10;
    public const byte CtrAuxDis = 0x20;
    public const byte CtrXlate = 0x40;

    public const int CmdCtlRctr = 0x0120;
    public const int CmdCtlWctr = 0x1060;
    public const int CmdCtlTest = 0x01aa;
    public const int CmdAuxDisable = 0x00a7;
    public const int CmdAuxEnable = 0x00a8;
    public const int CmdAuxTest = 0x01a9;
    public const int CmdAuxLoop = 0x11d3;
    public const byte RetCtlTest = 0x55;

    // libps2 / atkbd
    public const byte Ps2Ack = 0xfa;

    private const int CtlTimeout = 10000;
    private const int BufferSize = 16;
    private const int EIO = 5;
    private const int ENODEV = 19;

    private byte _initialCtr;

    public List<string> Messages { get; } = [];

    /// <summary>Status polls beyond the first in i8042_wait_read/i8042_wait_write: time the guest spent waiting.</summary>
    public int ExtraPolls { get; private set; }

    /// <summary>Waits that ran into I8042_CTL_TIMEOUT (half a second each on a real guest).</summary>
    public int Timeouts { get; private set; }

    /// <summary>Interrupts taken that found no data (i8042_interrupt's "without any data").</summary>
    public int SpuriousInterrupts { get; private set; }

    /// <summary>Bytes i8042_interrupt read and passed to the keyboard port (serio_interrupt).</summary>
    public List<byte> KeyboardBytes { get; } = [];

    /// <summary>Bytes i8042_interrupt read with the AUX status bit set.</summary>
    public List<byte> AuxBytes { get; } = [];

    /// <summary>The i8042.direct option: put the keyboard port into non-translated mode.</summary>
    public bool Direct { get; set; }

    public byte Ctr { get; private set; }

    public byte InitialCtr => _initialCtr;

    public byte ReadStatus() => bus.Inb(StatusReg);

    public byte ReadData() => bus.Inb(DataReg);

    public void WriteData(byte value) => bus.Outb(DataReg, value);

    public void WriteCommand(byte value) => bus.Outb(CommandReg, value);

    public int WaitRead()
    {
        int i = 0;
        while ((~ReadStatus() & StrObf) != 0 && i < CtlTimeout)
        {
            i++;
        }

        ExtraPolls += i;
        if (i == CtlTimeout)
        {
            Timeouts++;
            return -1;
        }

        return 0;
    }

    public int WaitWrite()
    {
        int i = 0;
        while ((ReadStatus() & StrIbf) != 0 && i < CtlTimeout)
        {
            i++;
        }

        ExtraPolls += i;
        if (i == CtlTimeout)
        {
            Timeouts++;
            return -1;
        }

        return 0;
    }

    public int Flush()
    {
        int count = 0;
        int retval = 0;
        while ((ReadStatus() & StrObf) != 0)
        {
            if (count++ < BufferSize)
            {
                ReadData();
            }
            else
            {
                retval = -EIO;
                break;
            }
        }

        return retval;
    }

    public int Command(Span<byte> param, int command)
    {
        int error = WaitWrite();
        if (error != 0)
        {
            return error;
        }

        WriteCommand((byte)command);
        for (int i = 0; i < ((command >> 12) & 0xf); i++)
        {
            error = WaitWrite();
            if (error != 0)
            {
                return error;
            }

            WriteData(param[i]);
        }

        for (int i = 0; i < ((command >> 8) & 0xf); i++)
        {
            error = WaitRead();
            if (error != 0)
            {
                return error;
            }

            if (command == CmdAuxLoop && (ReadStatus() & StrAuxData) == 0)
            {
                return -1;
            }

            param[i] = ReadData();
        }

        return 0;
    }

    public int ControllerCheck()
    {
        if (Flush() != 0)
        {
            Messages.Add("No controller found");
            return -ENODEV;
        }

        return 0;
    }

    public int ControllerSelftest()
    {
        Span<byte> param = stackalloc byte[1];
        int i = 0;
        do
        {
            if (Command(param, CmdCtlTest) != 0)
            {
                Messages.Add("i8042 controller selftest timeout");
                return -ENODEV;
            }

            if (param[0] == RetCtlTest)
            {
                return 0;
            }
        }
        while (i++ < 5);

        Messages.Add("i8042 controller selftest failed");
        return -EIO;
    }

    public int ControllerInit()
    {
        Span<byte> ctr = stackalloc byte[2];
        int n = 0;
        do
        {
            if (n >= 10)
            {
                Messages.Add("Unable to get stable CTR read");
                return -EIO;
            }

            if (Command(ctr.Slice(n++ % 2, 1), CmdCtlRctr) != 0)
            {
                Messages.Add("Can't read CTR while initializing i8042");
                return -EIO;
            }
        }
        while (n < 2 || ctr[0] != ctr[1]);

        _initialCtr = ctr[0];
        byte value = ctr[0];
        value |= CtrKbdDis;
        value &= unchecked((byte)~CtrKbdInt);

        if ((~ReadStatus() & StrKeylock) != 0)
        {
            Messages.Add("Warning: Keylock active");
        }

        if ((~value & CtrXlate) != 0)
        {
            Direct = true;
        }

        if (Direct)
        {
            value &= unchecked((byte)~CtrXlate);
        }

        Ctr = value;
        if (WriteCtr() != 0)
        {
            Messages.Add("Can't write CTR while initializing i8042");
            return -EIO;
        }

        Flush();
        return 0;
    }

    /// <returns>-1 when the AUX port is judged absent; 1 when the probe would go on to test AUX IRQ delivery
    /// (the port looked present).</returns>
    public int CheckAux()
    {
        Span<byte> param = stackalloc byte[1];
        bool auxLoopBroken = false;

        Flush();

        param[0] = 0x5a;
        int retval = Command(param, CmdAuxLoop);
        if (retval != 0 || param[0] != 0x5a)
        {
            if (Command(param, CmdAuxTest) != 0 || (param[0] != 0 && param[0] != 0xfa && param[0] != 0xff))
            {
                return -1;
            }

            if (retval == 0)
            {
                auxLoopBroken = true;
            }
        }

        if (ToggleAux(false) != 0)
        {
            Messages.Add("Failed to disable AUX port, but continuing anyway... Is this a SiS?");
            Messages.Add("If AUX port is really absent please use the 'i8042.noaux' option");
        }

        if (ToggleAux(true) != 0)
        {
            return -1;
        }

        return auxLoopBroken ? 0 : 1;
    }

    public int EnableKbdPort()
    {
        Ctr = (byte)((Ctr & ~CtrKbdDis) | CtrKbdInt);
        if (WriteCtr() != 0)
        {
            Ctr = (byte)((Ctr & ~CtrKbdInt) | CtrKbdDis);
            Messages.Add("Failed to enable KBD port");
            return -EIO;
        }

        return 0;
    }

    /// <summary>i8042_controller_reset, run at shutdown and reboot: disable both ports, then restore the BIOS CTR.</summary>
    public void ControllerReset(bool selftest)
    {
        Flush();
        Ctr = (byte)((Ctr | CtrKbdDis | CtrAuxDis) & ~(CtrKbdInt | CtrAuxInt));
        if (WriteCtr() != 0)
        {
            Messages.Add("Can't write CTR while resetting");
        }

        if (selftest)
        {
            ControllerSelftest();
        }

        Span<byte> initial = [_initialCtr];
        if (Command(initial, CmdCtlWctr) != 0)
        {
            Messages.Add("Can't restore CTR");
        }
    }

    /// <summary>i8042_kbd_write: send a byte to the keyboard through the data port.</summary>
    public int KbdWrite(byte value)
    {
        int error = WaitWrite();
        if (error == 0)
        {
            WriteData(value);
        }

        return error;
    }

    /// <summary>Take every interrupt IRQ 1 latches, running i8042_interrupt for each.</summary>
    public void ServiceInterrupts()
    {
        while (keyboardIrq.TakeRequest())
        {
            byte str = ReadStatus();
            if ((~str & StrObf) != 0)
            {
                SpuriousInterrupts++;
                continue;
            }

            byte data = ReadData();
            (((str & StrAuxData) != 0) ? AuxBytes : KeyboardBytes).Add(data);
        }
    }

    /// <summary>
    /// libps2's ps2_command seen from the wire: send the command and its parameters, each answered by an ACK that
    /// arrives by interrupt, then collect the response bytes, also by interrupt.
    /// </summary>
    /// <returns>The response bytes.</returns>
    /// <exception cref="InvalidOperationException">An ACK or the expected number of response bytes did not arrive
    /// (ps2_command would time out).</exception>
    public byte[] Ps2Command(byte command, ReadOnlySpan<byte> parameters, int responseLength)
    {
        ExpectAck(command);
        foreach (byte parameter in parameters)
        {
            ExpectAck(parameter);
        }

        int start = KeyboardBytes.Count;
        ServiceInterrupts();
        int received = KeyboardBytes.Count - start;
        if (received != responseLength)
        {
            throw new InvalidOperationException(
                $"PS/2 command 0x{command:x2}: {received} response bytes arrived, {responseLength} expected.");
        }

        return KeyboardBytes.GetRange(start, responseLength).ToArray();
    }

    /// <summary>Linux 6.1 i8042_init + i8042_probe with default options, up to the point the KBD port is registered.</summary>
    /// <returns>Whether the KBD port would be registered; the AUX verdict is in <paramref name="auxPresent"/>.</returns>
    public bool Probe(bool resetOption, out bool auxPresent)
    {
        auxPresent = false;
        if (ControllerCheck() != 0)
        {
            return false;
        }

        if (resetOption && ControllerSelftest() != 0)
        {
            return false;
        }

        if (ControllerInit() != 0)
        {
            return false;
        }

        auxPresent = CheckAux() >= 0;
        return EnableKbdPort() == 0;
    }

    private void ExpectAck(byte value)
    {
        if (KbdWrite(value) != 0)
        {
            throw new InvalidOperationException($"PS/2 byte 0x{value:x2}: the controller never accepted it.");
        }

        // The ACK must arrive by itself, by interrupt, before anything else is sent.
        if (!keyboardIrq.TakeRequest())
        {
            throw new InvalidOperationException($"PS/2 byte 0x{value:x2}: no interrupt for the ACK.");
        }

        byte str = ReadStatus();
        if ((str & StrObf) == 0)
        {
            SpuriousInterrupts++;
            throw new InvalidOperationException($"PS/2 byte 0x{value:x2}: interrupt without data.");
        }

        byte data = ReadData();
        KeyboardBytes.Add(data);
        if (data != Ps2Ack)
        {
            throw new InvalidOperationException($"PS/2 byte 0x{value:x2}: answered 0x{data:x2} instead of an ACK.");
        }
    }

    private int ToggleAux(bool on)
    {
        Span<byte> param = stackalloc byte[1];
        if (Command(param, on ? CmdAuxEnable : CmdAuxDisable) != 0)
        {
            return -1;
        }

        for (int i = 0; i < 100; i++)
        {
            if (Command(param, CmdCtlRctr) != 0)
            {
                return -1;
            }

            if (((param[0] & CtrAuxDis) == 0) == on)
            {
                return 0;
            }
        }

        return -1;
    }

    private int WriteCtr()
    {
        Span<byte> param = [Ctr];
        return Command(param, CmdCtlWctr);
    }
}
