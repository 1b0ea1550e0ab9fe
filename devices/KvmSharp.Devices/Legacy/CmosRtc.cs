using KvmSharp.Devices.Bus;

namespace KvmSharp.Devices.Legacy;

/// <summary>
/// The PC's MC146818 real-time clock and its 128 bytes of CMOS RAM, seen through the index port (0x70, offset 0)
/// and the data port (0x71, offset 1).
/// </summary>
/// <remarks>
/// <para>Bit 7 of the index is the NMI mask on a PC, not part of the address: it is recorded in
/// <see cref="NmiDisabled"/> and ignored for addressing. The index port is write-only and reads 0xff.</para>
/// <para>The time registers (0x00 seconds, 0x02 minutes, 0x04 hours, 0x06 day of week with Sunday = 1,
/// 0x07 day of month, 0x08 month, 0x09 year, and 0x32 century) are computed from the injected clock plus an
/// offset on every read, in the format register B selects: BCD or binary (DM, bit 2) and 24 or 12 hours
/// (bit 1; in 12-hour mode bit 7 of the hour is PM). The default is BCD and 24 hours, as PCs boot.
/// The century follows the same BCD/binary format as the other fields.</para>
/// <para>Register A's update-in-progress bit never reads as set: every read samples the clock afresh, so there is
/// no update window to avoid. Linux's mc146818 code reads the seconds before and after the other fields and
/// retries if they differ, which covers a read sequence that straddles a second boundary. The other bits of
/// register A are plain storage.</para>
/// <para>Setting register B's SET bit freezes the time registers at their current values (and clears UIE, as the
/// chip does) so the guest can write them; clearing it starts the clock again from the written time, kept as an
/// offset from the host clock. A time register written without SET is applied at once. The day of week is always
/// derived from the date; a write to it is ignored. A written time that is not a valid date (month 13, a BCD digit
/// above 9, ...) is ignored and the clock keeps its previous offset.</para>
/// <para>Register C reports update-ended (UF) when the time has passed a second boundary since the last read of C,
/// and periodic (PF) when at least one period of the rate in register A has passed; IRQF is set when a flag is
/// enabled in register B. Reading C clears it. Alarms are not compared (AF is never set), no interrupt is raised
/// (there is no IRQ 8 line), and the alarm registers (0x01, 0x03, 0x05) are plain storage.
/// Register D always reads 0x80 (valid RAM and time).</para>
/// <para>Everything else (0x0e-0x7f but 0x32) is plain CMOS RAM, zero at power-on apart from the memory sizes
/// <see cref="SetMemorySizes"/> stores. No checksum is kept at 0x2e/0x2f.</para>
/// <para>A single uncontended lock guards the state; it does not allocate when taken, and neither does the clock.</para>
/// </remarks>
public sealed class CmosRtc : IBusDevice
{
    /// <summary>Port the window starts at: register the RTC at <see cref="BasePort"/> for <see cref="RegisterBlockLength"/> ports.</summary>
    public const ulong BasePort = 0x70;

    /// <summary>Index and data ports.</summary>
    public const ulong RegisterBlockLength = 2;

    /// <summary>Bytes of CMOS addressable through the index port (bit 7 of the index is the NMI mask).</summary>
    public const int CmosSize = 128;

    private const int IndexOffset = 0;
    private const int DataOffset = 1;
    private const byte IndexMask = 0x7f;
    private const byte NmiDisableBit = 0x80;

    private const int SecondsIndex = 0x00;
    private const int MinutesIndex = 0x02;
    private const int HoursIndex = 0x04;
    private const int DayOfWeekIndex = 0x06;
    private const int DayOfMonthIndex = 0x07;
    private const int MonthIndex = 0x08;
    private const int YearIndex = 0x09;
    private const int RegisterAIndex = 0x0a;
    private const int RegisterBIndex = 0x0b;
    private const int RegisterCIndex = 0x0c;
    private const int RegisterDIndex = 0x0d;
    private const int CenturyIndex = 0x32;

    private const int BaseMemoryIndex = 0x15;          // KiB below 640 KiB, 2 bytes little-endian
    private const int ExtendedMemoryIndex = 0x17;      // KiB above 1 MiB, capped at 0xffff
    private const int ExtendedMemoryCopyIndex = 0x30;  // the same value again
    private const int MemoryAbove16MiBIndex = 0x34;    // 64 KiB blocks above 16 MiB, capped at 0xffff
    private const int MemoryAbove4GiBIndex = 0x5b;     // 64 KiB blocks above 4 GiB, 3 bytes (QEMU/SeaBIOS convention)

    private const byte RegisterAUpdateInProgress = 0x80;
    private const byte RegisterARateMask = 0x0f;
    private const byte DefaultRegisterA = 0x26;        // 32.768 kHz time base, 1024 Hz periodic rate

    private const byte RegisterBSet = 0x80;
    private const byte RegisterBUpdateEndedInterrupt = 0x10;
    private const byte RegisterBInterruptEnables = 0x70; // PIE, AIE, UIE
    private const byte RegisterBBinary = 0x04;
    private const byte RegisterB24Hour = 0x02;
    private const byte DefaultRegisterB = RegisterB24Hour;

    private const byte RegisterCInterruptRequest = 0x80;
    private const byte RegisterCPeriodic = 0x40;
    private const byte RegisterCUpdateEnded = 0x10;

    private const byte RegisterDValid = 0x80;
    private const byte HourPm = 0x80;

    private const ulong KiB = 1024;
    private const ulong MiB = 1024 * KiB;
    private const ulong FourGiB = 4096 * MiB;
    private const ulong BaseMemoryLimit = 640 * KiB;

    private readonly Lock _lock = new();
    private readonly Func<DateTime> _clock;
    private readonly byte[] _cmos = new byte[CmosSize];
    private byte _index;
    private bool _nmiDisabled;
    private long _offsetTicks;
    private byte _flags;
    private long _flagsCheckedAtTicks;
    private long _flagsCheckedAtSecond;

    /// <param name="clock">Source of the wall-clock time the guest's RTC runs from; defaults to the host's UTC time.
    /// Called under the device lock on vCPU threads, so it must be fast and must not allocate.</param>
    public CmosRtc(Func<DateTime>? clock = null)
    {
        _clock = clock ?? (static () => DateTime.UtcNow);
        _cmos[RegisterAIndex] = DefaultRegisterA;
        _cmos[RegisterBIndex] = DefaultRegisterB;
        ResetFlagBaseline(_clock().Ticks);
    }

    /// <summary>Whether the guest's last index write had bit 7 (NMI disable) set.</summary>
    public bool NmiDisabled
    {
        get
        {
            lock (_lock)
            {
                return _nmiDisabled;
            }
        }
    }

    /// <summary>The time the guest's clock shows now: the host clock plus whatever offset the guest set, with the
    /// clock's <see cref="DateTimeKind"/>.</summary>
    public DateTime GuestTime
    {
        get
        {
            lock (_lock)
            {
                return GuestNow();
            }
        }
    }

    /// <summary>
    /// Store the memory sizes PC firmware leaves in CMOS, which some firmware-less guests read: base memory in KiB
    /// (0x15-0x16, at most 640), extended memory above 1 MiB in KiB (0x17-0x18 and 0x30-0x31, capped at 0xffff),
    /// memory above 16 MiB in 64 KiB blocks (0x34-0x35, capped at 0xffff) and memory above 4 GiB in 64 KiB
    /// blocks (0x5b-0x5d).
    /// </summary>
    /// <param name="bytes">RAM that starts at guest physical address 0 (the part below 4 GiB).</param>
    /// <param name="bytesAboveFourGiB">RAM that starts at 4 GiB.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="bytes"/> is above 4 GiB: pass the part above
    /// 4 GiB separately.</exception>
    public void SetMemorySizes(ulong bytes, ulong bytesAboveFourGiB = 0)
    {
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bytes, FourGiB);
        ulong baseKiB = Math.Min(bytes, BaseMemoryLimit) / KiB;
        ulong extendedKiB = bytes > MiB ? Math.Min((bytes - MiB) / KiB, 0xffff) : 0;
        ulong above16MiB = bytes > 16 * MiB ? Math.Min((bytes - 16 * MiB) / (64 * KiB), 0xffff) : 0;
        ulong above4GiB = Math.Min(bytesAboveFourGiB / (64 * KiB), 0xff_ffff);
        lock (_lock)
        {
            StoreLittleEndian(BaseMemoryIndex, baseKiB, 2);
            StoreLittleEndian(ExtendedMemoryIndex, extendedKiB, 2);
            StoreLittleEndian(ExtendedMemoryCopyIndex, extendedKiB, 2);
            StoreLittleEndian(MemoryAbove16MiBIndex, above16MiB, 2);
            StoreLittleEndian(MemoryAbove4GiBIndex, above4GiB, 3);
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
        switch (offset)
        {
            case IndexOffset:
                data[0] = 0xff;
                break;
            case DataOffset:
                lock (_lock)
                {
                    data[0] = ReadRegister(_index);
                }

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

        switch (offset)
        {
            case IndexOffset:
                lock (_lock)
                {
                    _index = (byte)(data[0] & IndexMask);
                    _nmiDisabled = (data[0] & NmiDisableBit) != 0;
                }

                break;
            case DataOffset:
                lock (_lock)
                {
                    WriteRegister(_index, data[0]);
                }

                break;
        }
    }

    private bool Frozen => (_cmos[RegisterBIndex] & RegisterBSet) != 0;

    private bool Binary => (_cmos[RegisterBIndex] & RegisterBBinary) != 0;

    private bool TwentyFourHour => (_cmos[RegisterBIndex] & RegisterB24Hour) != 0;

    private static bool IsTimeRegister(int index) => index is SecondsIndex or MinutesIndex or HoursIndex
        or DayOfWeekIndex or DayOfMonthIndex or MonthIndex or YearIndex or CenturyIndex;

    private DateTime GuestNow()
    {
        DateTime host = _clock();
        return new DateTime(ClampTicks(host.Ticks + _offsetTicks), host.Kind);
    }

    // A guest that set its clock to the last second of year 9999 must not make the next read throw.
    private static long ClampTicks(long ticks) => Math.Clamp(ticks, DateTime.MinValue.Ticks, DateTime.MaxValue.Ticks);

    private byte ReadRegister(int index)
    {
        if (IsTimeRegister(index) && !Frozen)
        {
            return EncodeField(index, GuestNow());
        }

        switch (index)
        {
            case RegisterAIndex:
                return (byte)(_cmos[RegisterAIndex] & ~RegisterAUpdateInProgress);
            case RegisterCIndex:
                return ReadAndClearFlags();
            case RegisterDIndex:
                return RegisterDValid;
            default:
                return _cmos[index];
        }
    }

    private void WriteRegister(int index, byte value)
    {
        switch (index)
        {
            case RegisterAIndex:
                _cmos[RegisterAIndex] = (byte)(value & ~RegisterAUpdateInProgress);
                break;
            case RegisterBIndex:
                WriteRegisterB(value);
                break;
            case RegisterCIndex:
            case RegisterDIndex:
                // Read-only.
                break;
            case DayOfWeekIndex when !Frozen:
                // Derived from the date.
                break;
            default:
                if (IsTimeRegister(index) && !Frozen)
                {
                    WriteRunningTimeRegister(index, value);
                }
                else
                {
                    _cmos[index] = value;
                }

                break;
        }
    }

    private void WriteRegisterB(byte value)
    {
        bool wasFrozen = Frozen;
        bool freeze = (value & RegisterBSet) != 0;
        if (freeze)
        {
            // Setting SET clears UIE on the chip.
            value = (byte)(value & ~RegisterBUpdateEndedInterrupt);
        }

        _cmos[RegisterBIndex] = value;
        if (freeze && !wasFrozen)
        {
            // Freeze the fields in the new format so the guest reads coherent values while it writes.
            StoreTimeFields(GuestNow());
        }
        else if (!freeze && wasFrozen)
        {
            // Resume from what the guest wrote, read in the format it now selects.
            long nowTicks = _clock().Ticks;
            if (TryParseTimeFields(out DateTime written))
            {
                _offsetTicks = written.Ticks - nowTicks;
            }

            ResetFlagBaseline(nowTicks);
        }
    }

    // A running clock's field written directly: the other fields keep counting from now, this one takes the value.
    private void WriteRunningTimeRegister(int index, byte value)
    {
        long nowTicks = _clock().Ticks;
        var now = new DateTime(ClampTicks(nowTicks + _offsetTicks));
        StoreTimeFields(now);
        _cmos[index] = value;
        if (TryParseTimeFields(out DateTime written))
        {
            long subSecond = now.Ticks % TimeSpan.TicksPerSecond;
            _offsetTicks = written.Ticks + subSecond - nowTicks;
            ResetFlagBaseline(nowTicks);
        }
    }

    private byte ReadAndClearFlags()
    {
        long nowTicks = _clock().Ticks;
        if (!Frozen)
        {
            long second = (nowTicks + _offsetTicks) / TimeSpan.TicksPerSecond;
            if (second != _flagsCheckedAtSecond)
            {
                _flags |= RegisterCUpdateEnded;
            }

            long period = PeriodicTicks(_cmos[RegisterAIndex] & RegisterARateMask);
            if (period > 0 && nowTicks - _flagsCheckedAtTicks >= period)
            {
                _flags |= RegisterCPeriodic;
            }
        }

        byte flags = _flags;
        if ((flags & _cmos[RegisterBIndex] & RegisterBInterruptEnables) != 0)
        {
            flags |= RegisterCInterruptRequest;
        }

        _flags = 0;
        ResetFlagBaseline(nowTicks);
        return flags;
    }

    private void ResetFlagBaseline(long nowTicks)
    {
        _flagsCheckedAtTicks = nowTicks;
        _flagsCheckedAtSecond = (nowTicks + _offsetTicks) / TimeSpan.TicksPerSecond;
    }

    // Rate select 0 stops the periodic flag; 1 and 2 give 256 and 128 Hz; 3-15 give 32768 >> (rate - 1) Hz.
    private static long PeriodicTicks(int rate) => rate switch
    {
        0 => 0,
        1 => TimeSpan.TicksPerSecond / 256,
        2 => TimeSpan.TicksPerSecond / 128,
        _ => TimeSpan.TicksPerSecond * (1L << (rate - 1)) / 32768,
    };

    private byte EncodeField(int index, DateTime time) => index switch
    {
        SecondsIndex => Encode(time.Second),
        MinutesIndex => Encode(time.Minute),
        HoursIndex => EncodeHour(time.Hour),
        DayOfWeekIndex => Encode((int)time.DayOfWeek + 1),
        DayOfMonthIndex => Encode(time.Day),
        MonthIndex => Encode(time.Month),
        YearIndex => Encode(time.Year % 100),
        _ => Encode(time.Year / 100),
    };

    private byte Encode(int value) => Binary ? (byte)value : (byte)(((value / 10) << 4) | (value % 10));

    private byte EncodeHour(int hour)
    {
        if (TwentyFourHour)
        {
            return Encode(hour);
        }

        int twelveHour = hour % 12 == 0 ? 12 : hour % 12;
        return (byte)(Encode(twelveHour) | (hour >= 12 ? HourPm : 0));
    }

    private void StoreTimeFields(DateTime time)
    {
        _cmos[SecondsIndex] = EncodeField(SecondsIndex, time);
        _cmos[MinutesIndex] = EncodeField(MinutesIndex, time);
        _cmos[HoursIndex] = EncodeField(HoursIndex, time);
        _cmos[DayOfWeekIndex] = EncodeField(DayOfWeekIndex, time);
        _cmos[DayOfMonthIndex] = EncodeField(DayOfMonthIndex, time);
        _cmos[MonthIndex] = EncodeField(MonthIndex, time);
        _cmos[YearIndex] = EncodeField(YearIndex, time);
        _cmos[CenturyIndex] = EncodeField(CenturyIndex, time);
    }

    private bool TryParseTimeFields(out DateTime time)
    {
        time = default;
        if (!TryDecode(_cmos[SecondsIndex], 59, out int second)
            || !TryDecode(_cmos[MinutesIndex], 59, out int minute)
            || !TryDecodeHour(_cmos[HoursIndex], out int hour)
            || !TryDecode(_cmos[MonthIndex], 12, out int month)
            || !TryDecode(_cmos[YearIndex], 99, out int yearInCentury)
            || !TryDecode(_cmos[CenturyIndex], 99, out int century)
            || !TryDecode(_cmos[DayOfMonthIndex], 31, out int day))
        {
            return false;
        }

        int year = century * 100 + yearInCentury;
        if (year < 1 || month < 1 || day < 1 || day > DateTime.DaysInMonth(year, month))
        {
            return false;
        }

        time = new DateTime(year, month, day, hour, minute, second);
        return true;
    }

    private bool TryDecodeHour(byte raw, out int hour)
    {
        if (TwentyFourHour)
        {
            return TryDecode(raw, 23, out hour);
        }

        if (!TryDecode((byte)(raw & ~HourPm), 12, out int twelveHour) || twelveHour == 0)
        {
            hour = 0;
            return false;
        }

        hour = twelveHour % 12 + ((raw & HourPm) != 0 ? 12 : 0);
        return true;
    }

    private bool TryDecode(byte raw, int max, out int value)
    {
        if (Binary)
        {
            value = raw;
        }
        else
        {
            int high = raw >> 4;
            int low = raw & 0x0f;
            value = high * 10 + low;
            if (high > 9 || low > 9)
            {
                return false;
            }
        }

        return value <= max;
    }

    private void StoreLittleEndian(int index, ulong value, int length)
    {
        for (int i = 0; i < length; i++)
        {
            _cmos[index + i] = (byte)(value >> (8 * i));
        }
    }
}
