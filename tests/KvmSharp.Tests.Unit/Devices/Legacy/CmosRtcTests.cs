using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Legacy;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

public sealed class CmosRtcTests
{
    private const ulong IndexPort = 0;
    private const ulong DataPort = 1;

    private const byte Seconds = 0x00;
    private const byte SecondsAlarm = 0x01;
    private const byte Minutes = 0x02;
    private const byte Hours = 0x04;
    private const byte DayOfWeek = 0x06;
    private const byte DayOfMonth = 0x07;
    private const byte Month = 0x08;
    private const byte Year = 0x09;
    private const byte RegisterA = 0x0a;
    private const byte RegisterB = 0x0b;
    private const byte RegisterC = 0x0c;
    private const byte RegisterD = 0x0d;
    private const byte Century = 0x32;

    private const byte BSet = 0x80;
    private const byte BPeriodicInterrupt = 0x40;
    private const byte BUpdateEndedInterrupt = 0x10;
    private const byte BBinary = 0x04;
    private const byte B24Hour = 0x02;

    private const byte CIrqf = 0x80;
    private const byte CPeriodic = 0x40;
    private const byte CUpdateEnded = 0x10;

    // Friday 15 March 2024, 13:45:27.250 UTC.
    private DateTime _now = new(2024, 3, 15, 13, 45, 27, 250, DateTimeKind.Utc);
    private readonly CmosRtc _rtc;

    public CmosRtcTests() => _rtc = new CmosRtc(() => _now);

    [Fact]
    public void Boots_in_BCD_24_hour_mode_with_the_clock_time()
    {
        Assert.Equal(B24Hour, ReadCmos(RegisterB));
        Assert.Equal(0x27, ReadCmos(Seconds));
        Assert.Equal(0x45, ReadCmos(Minutes));
        Assert.Equal(0x13, ReadCmos(Hours));
        Assert.Equal(0x06, ReadCmos(DayOfWeek)); // Sunday = 1, so Friday = 6
        Assert.Equal(0x15, ReadCmos(DayOfMonth));
        Assert.Equal(0x03, ReadCmos(Month));
        Assert.Equal(0x24, ReadCmos(Year));
        Assert.Equal(0x20, ReadCmos(Century));
    }

    [Fact]
    public void Binary_mode_reports_plain_numbers()
    {
        WriteCmos(RegisterB, B24Hour | BBinary);

        Assert.Equal(27, ReadCmos(Seconds));
        Assert.Equal(45, ReadCmos(Minutes));
        Assert.Equal(13, ReadCmos(Hours));
        Assert.Equal(6, ReadCmos(DayOfWeek));
        Assert.Equal(15, ReadCmos(DayOfMonth));
        Assert.Equal(3, ReadCmos(Month));
        Assert.Equal(24, ReadCmos(Year));
        Assert.Equal(20, ReadCmos(Century));
    }

    [Theory]
    [InlineData(0, false, 0x12)]  // midnight is 12 AM
    [InlineData(1, false, 0x01)]
    [InlineData(11, false, 0x11)]
    [InlineData(12, false, 0x92)] // noon is 12 PM
    [InlineData(13, false, 0x81)]
    [InlineData(23, false, 0x91)]
    [InlineData(0, true, 12)]
    [InlineData(12, true, 0x80 | 12)]
    [InlineData(23, true, 0x80 | 11)]
    public void Twelve_hour_mode_sets_bit_7_for_PM(int hour, bool binary, byte expected)
    {
        _now = new DateTime(2024, 3, 15, hour, 5, 0, DateTimeKind.Utc);
        WriteCmos(RegisterB, binary ? BBinary : (byte)0);

        Assert.Equal(expected, ReadCmos(Hours));
    }

    [Theory]
    [InlineData(1999, 0x19, 0x99)]
    [InlineData(2000, 0x20, 0x00)]
    [InlineData(2100, 0x21, 0x00)]
    public void Century_and_year_split_the_year(int year, byte century, byte yearInCentury)
    {
        _now = new DateTime(year, 6, 1, 0, 0, 0, DateTimeKind.Utc);

        Assert.Equal(century, ReadCmos(Century));
        Assert.Equal(yearInCentury, ReadCmos(Year));
    }

    [Fact]
    public void The_clock_is_read_afresh_on_every_access()
    {
        Assert.Equal(0x27, ReadCmos(Seconds));

        _now = _now.AddSeconds(40);

        Assert.Equal(0x07, ReadCmos(Seconds));
        Assert.Equal(0x46, ReadCmos(Minutes));
    }

    [Fact]
    public void Linux_mc146818_get_time_reads_a_consistent_time_on_its_first_attempt()
    {
        // mc146818_avoid_UIP: seconds, UIP, seconds again, then the fields, UIP and seconds once more; any change
        // means a retry. The clock moves 1 ms per access, as a guest's port exits take time.
        var rtc = new CmosRtc(() => _now = _now.AddMilliseconds(1));
        byte Read(byte index)
        {
            rtc.WriteByteAt(IndexPort, index);
            return rtc.ReadByteAt(DataPort);
        }

        int attempts = 0;
        byte sec, min, hour, day, mon, year, century;
        while (true)
        {
            attempts++;
            byte seconds = Read(Seconds);
            Assert.Equal(0, Read(RegisterA) & 0x80);
            if (seconds != Read(Seconds))
            {
                continue;
            }

            sec = Read(Seconds);
            min = Read(Minutes);
            hour = Read(Hours);
            day = Read(DayOfMonth);
            mon = Read(Month);
            year = Read(Year);
            century = Read(Century);
            Assert.Equal(0, Read(RegisterA) & 0x80);
            if (seconds == Read(Seconds))
            {
                break;
            }
        }

        Assert.Equal(1, attempts);
        Assert.Equal([0x27, 0x45, 0x13, 0x15, 0x03, 0x24, 0x20], new[] { sec, min, hour, day, mon, year, century });
    }

    [Fact]
    public void Register_A_never_reports_an_update_in_progress_and_keeps_its_other_bits()
    {
        Assert.Equal(0x26, ReadCmos(RegisterA));

        WriteCmos(RegisterA, 0xff);
        Assert.Equal(0x7f, ReadCmos(RegisterA));

        for (int i = 0; i < 1000; i++)
        {
            _now = _now.AddMilliseconds(1);
            Assert.Equal(0, ReadCmos(RegisterA) & 0x80);
        }
    }

    [Fact]
    public void Register_D_reports_valid_RAM_and_time_and_ignores_writes()
    {
        WriteCmos(RegisterD, 0x00);

        Assert.Equal(0x80, ReadCmos(RegisterD));
    }

    [Fact]
    public void Register_C_reports_update_ended_after_a_second_passes_and_reading_clears_it()
    {
        Assert.Equal(0, ReadCmos(RegisterC) & CUpdateEnded);

        _now = _now.AddSeconds(1);

        Assert.Equal(CUpdateEnded, ReadCmos(RegisterC) & (CUpdateEnded | CIrqf)); // not enabled: no IRQF
        Assert.Equal(0, ReadCmos(RegisterC));
    }

    [Fact]
    public void Register_C_sets_IRQF_when_a_reported_flag_is_enabled()
    {
        WriteCmos(RegisterB, B24Hour | BUpdateEndedInterrupt);
        ReadCmos(RegisterC);
        _now = _now.AddSeconds(2);

        Assert.Equal(CIrqf | CUpdateEnded, ReadCmos(RegisterC) & (CIrqf | CUpdateEnded));
        Assert.Equal(0, ReadCmos(RegisterC));
    }

    [Fact]
    public void Register_C_reports_the_periodic_flag_once_a_period_has_passed()
    {
        WriteCmos(RegisterA, 0x2f); // rate 15: 2 Hz, a 500 ms period
        WriteCmos(RegisterB, B24Hour | BPeriodicInterrupt);
        ReadCmos(RegisterC);

        _now = _now.AddMilliseconds(100);
        Assert.Equal(0, ReadCmos(RegisterC) & CPeriodic);

        _now = _now.AddMilliseconds(600);
        Assert.Equal(CIrqf | CPeriodic, ReadCmos(RegisterC) & (CIrqf | CPeriodic));
        Assert.Equal(0, ReadCmos(RegisterC) & CPeriodic);
    }

    [Fact]
    public void Register_C_ignores_writes()
    {
        _now = _now.AddSeconds(1);
        WriteCmos(RegisterC, 0x00);

        Assert.Equal(CUpdateEnded, ReadCmos(RegisterC) & CUpdateEnded);
    }

    [Fact]
    public void Setting_SET_freezes_the_time_and_clears_the_update_interrupt_enable()
    {
        WriteCmos(RegisterB, B24Hour | BUpdateEndedInterrupt | BSet);

        _now = _now.AddSeconds(5);

        Assert.Equal(0x27, ReadCmos(Seconds));
        Assert.Equal(B24Hour | BSet, ReadCmos(RegisterB));
        Assert.Equal(0, ReadCmos(RegisterC) & CUpdateEnded);
    }

    [Fact]
    public void Guest_sets_the_time_like_Linux_mc146818_set_time_and_the_clock_runs_on_from_it()
    {
        DateTime hostBefore = _now;

        // mc146818_set_time: SET, divider reset, write the fields in the current format, restore B and A.
        byte control = ReadCmos(RegisterB);
        WriteCmos(RegisterB, (byte)(control | BSet));
        byte freqSelect = ReadCmos(RegisterA);
        WriteCmos(RegisterA, (byte)(freqSelect | 0x70));
        WriteCmos(Year, 0x99);
        WriteCmos(Month, 0x12);
        WriteCmos(DayOfMonth, 0x31);
        WriteCmos(Hours, 0x23);
        WriteCmos(Minutes, 0x59);
        WriteCmos(Seconds, 0x58);
        WriteCmos(Century, 0x19);
        WriteCmos(RegisterB, control);
        WriteCmos(RegisterA, freqSelect);

        Assert.Equal(new DateTime(1999, 12, 31, 23, 59, 58), _rtc.GuestTime);

        _now = _now.AddSeconds(3);

        Assert.Equal(new DateTime(2000, 1, 1, 0, 0, 1), _rtc.GuestTime);
        Assert.Equal(0x01, ReadCmos(Seconds));
        Assert.Equal(0x00, ReadCmos(Year));
        Assert.Equal(0x20, ReadCmos(Century));
        Assert.Equal(0x07, ReadCmos(DayOfWeek)); // 1 January 2000 was a Saturday
        Assert.Equal(hostBefore.AddSeconds(3), _now); // the host clock was not touched
    }

    [Fact]
    public void Time_written_in_12_hour_binary_mode_is_read_in_that_mode()
    {
        WriteCmos(RegisterB, BBinary | BSet);
        WriteCmos(Hours, 0x80 | 12); // 12 PM
        WriteCmos(Minutes, 30);
        WriteCmos(Seconds, 0);
        WriteCmos(RegisterB, BBinary);

        Assert.Equal(new DateTime(2024, 3, 15, 12, 30, 0), _rtc.GuestTime);
    }

    [Fact]
    public void Writing_a_running_time_register_applies_at_once()
    {
        WriteCmos(Minutes, 0x10);

        Assert.Equal(0x10, ReadCmos(Minutes));
        Assert.Equal(0x27, ReadCmos(Seconds));
        Assert.Equal(0x13, ReadCmos(Hours));
        Assert.Equal(new DateTime(2024, 3, 15, 13, 10, 27, 250), _rtc.GuestTime);
    }

    [Fact]
    public void An_invalid_written_time_is_ignored()
    {
        WriteCmos(RegisterB, B24Hour | BSet);
        WriteCmos(Month, 0x13);
        WriteCmos(RegisterB, B24Hour);

        Assert.Equal(0x03, ReadCmos(Month));

        WriteCmos(Seconds, 0x5a); // not BCD
        Assert.Equal(0x27, ReadCmos(Seconds));
    }

    [Fact]
    public void Bit_7_of_the_index_masks_NMI_and_is_not_part_of_the_address()
    {
        _rtc.WriteByteAt(IndexPort, 0x80 | RegisterD);
        Assert.Equal(0x80, _rtc.ReadByteAt(DataPort));
        Assert.True(_rtc.NmiDisabled);

        _rtc.WriteByteAt(IndexPort, 0x80 | 0x40);
        _rtc.WriteByteAt(DataPort, 0x5c);
        _rtc.WriteByteAt(IndexPort, 0x40);
        Assert.False(_rtc.NmiDisabled);
        Assert.Equal(0x5c, _rtc.ReadByteAt(DataPort));

        _rtc.WriteByteAt(IndexPort, 0x80 | Seconds);
        Assert.Equal(0x27, _rtc.ReadByteAt(DataPort));
    }

    [Fact]
    public void Index_port_reads_as_write_only()
    {
        _rtc.WriteByteAt(IndexPort, 0x0e);

        Assert.Equal(0xff, _rtc.ReadByteAt(IndexPort));
    }

    [Fact]
    public void Plain_cmos_bytes_start_at_zero_and_round_trip()
    {
        var plain = Enumerable.Range(0x0e, 0x80 - 0x0e).Where(i => i != Century)
            .Concat([SecondsAlarm, 0x03, 0x05]).ToArray();
        foreach (int index in plain)
        {
            Assert.Equal(0, ReadCmos((byte)index));
        }

        foreach (int index in plain)
        {
            WriteCmos((byte)index, (byte)(index ^ 0xa5));
        }

        foreach (int index in plain)
        {
            Assert.Equal((byte)(index ^ 0xa5), ReadCmos((byte)index));
        }

        Assert.Equal(0x27, ReadCmos(Seconds)); // the clock was not disturbed
    }

    [Fact]
    public void Memory_sizes_land_in_the_firmware_locations()
    {
        _rtc.SetMemorySizes(512UL << 20);

        Assert.Equal(0x0280, ReadWord(0x15));  // 640 KiB base memory
        Assert.Equal(0xffff, ReadWord(0x17));  // 511 MiB above 1 MiB, capped
        Assert.Equal(0xffff, ReadWord(0x30));
        Assert.Equal(0x1f00, ReadWord(0x34));  // 496 MiB above 16 MiB in 64 KiB blocks
        Assert.Equal(0, ReadWord(0x5b) | ReadCmos(0x5d));
    }

    [Fact]
    public void Small_and_high_memory_sizes_are_reported_exactly()
    {
        _rtc.SetMemorySizes(8UL << 20, bytesAboveFourGiB: 2UL << 30);

        Assert.Equal(0x0280, ReadWord(0x15));
        Assert.Equal(7 * 1024, ReadWord(0x17));
        Assert.Equal(7 * 1024, ReadWord(0x30));
        Assert.Equal(0, ReadWord(0x34));
        Assert.Equal(0x00, ReadCmos(0x5b)); // 32768 blocks of 64 KiB = 0x008000
        Assert.Equal(0x80, ReadCmos(0x5c));
        Assert.Equal(0x00, ReadCmos(0x5d));

        _rtc.SetMemorySizes(512UL << 10);
        Assert.Equal(512, ReadWord(0x15));
        Assert.Equal(0, ReadWord(0x17));
    }

    [Fact]
    public void Memory_below_4_GiB_cannot_exceed_4_GiB()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => _rtc.SetMemorySizes((4UL << 30) + 1));
    }

    [Fact]
    public void Default_clock_is_the_host_UTC_time()
    {
        var rtc = new CmosRtc();
        DateTime before = DateTime.UtcNow;

        DateTime guest = rtc.GuestTime;

        Assert.InRange(guest, before.AddSeconds(-1), DateTime.UtcNow.AddSeconds(1));
        Assert.Equal(DateTimeKind.Utc, guest.Kind);
    }

    [Fact]
    public void Registered_on_the_port_bus_at_0x70_it_answers_through_0x71()
    {
        var pio = new DeviceBus("pio");
        pio.Register(CmosRtc.BasePort, CmosRtc.RegisterBlockLength, _rtc, "rtc");

        pio.Outb(0x70, RegisterD);

        Assert.Equal(0x80, pio.Inb(0x71));
        Assert.Equal(0, pio.UnhandledReads + pio.UnhandledWrites);
    }

    private byte ReadCmos(byte index)
    {
        _rtc.WriteByteAt(IndexPort, index);
        return _rtc.ReadByteAt(DataPort);
    }

    private void WriteCmos(byte index, byte value)
    {
        _rtc.WriteByteAt(IndexPort, index);
        _rtc.WriteByteAt(DataPort, value);
    }

    private int ReadWord(byte index) => ReadCmos(index) | (ReadCmos((byte)(index + 1)) << 8);
}
