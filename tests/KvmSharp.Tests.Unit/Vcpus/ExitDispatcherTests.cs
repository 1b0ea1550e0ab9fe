using KvmSharp.Devices.Bus;
using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Vcpus;
using Xunit;

namespace KvmSharp.Tests.Unit.Vcpus;

/// <summary>ExitDispatcher on hand-filled kvm_run pages: port I/O and MMIO routing, and the action for every exit.</summary>
public sealed unsafe class ExitDispatcherTests : IDisposable
{
    private const ushort DevicePort = 0x3f8;
    private const ulong DeviceMmio = 0xd000_0000;
    private const byte In = KvmRunIoDirection.KVM_EXIT_IO_IN;
    private const byte Out = KvmRunIoDirection.KVM_EXIT_IO_OUT;

    private readonly KvmRunBuffer _run = new();
    private readonly DeviceBus _pio = new("pio");
    private readonly DeviceBus _mmio = new("mmio");
    private readonly RecordingIoDevice _portDevice = new(firstReadByte: 0x10);
    private readonly RecordingIoDevice _mmioDevice = new(firstReadByte: 0x80);
    private readonly ExitDispatcher _dispatcher;

    public ExitDispatcherTests()
    {
        _pio.Register(DevicePort, 8, _portDevice, "uart");
        _mmio.Register(DeviceMmio, 0x1000, _mmioDevice, "regs");
        _dispatcher = new ExitDispatcher(_pio, _mmio);
    }

    public void Dispose() => _run.Dispose();

    private VcpuExitAction Dispatch(int vcpuId = 0) => _dispatcher.Dispatch(vcpuId, _run.Run);

    [Fact]
    public void Kvm_run_is_the_kernels_size()
    {
        Assert.Equal(2352, sizeof(kvm_run));
        Assert.True(KvmRunBuffer.DefaultDataOffset >= sizeof(kvm_run));
    }

    // ---- port I/O ------------------------------------------------------------------------------

    [Theory]
    [InlineData((byte)1, (ushort)0x3f8, 0UL, 0x41UL)]
    [InlineData((byte)1, (ushort)0x3fd, 5UL, 0x7fUL)]
    [InlineData((byte)2, (ushort)0x3fa, 2UL, 0xbeefUL)]
    [InlineData((byte)4, (ushort)0x3fc, 4UL, 0x1234_5678UL)]
    public void Out_reaches_the_device_with_its_offset_and_bytes(byte size, ushort port, ulong expectedOffset, ulong value)
    {
        _run.SetIo(Out, size, port, count: 1);
        BitConverter.TryWriteBytes(_run.Data(8), value);

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(1, _portDevice.Count);
        Assert.Equal(new RecordingIoDevice.Access(true, expectedOffset, size, value), _portDevice[0]);
    }

    [Theory]
    [InlineData((byte)1)]
    [InlineData((byte)2)]
    [InlineData((byte)4)]
    public void In_writes_the_devices_bytes_back_into_kvm_run(byte size)
    {
        _run.SetIo(In, size, DevicePort + 3, count: 1);
        _run.Data(8).Fill(0xee);

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(1, _portDevice.Count);
        Assert.False(_portDevice[0].IsWrite);
        Assert.Equal(3UL, _portDevice[0].Offset);
        Assert.Equal(size, _portDevice[0].Length);
        byte[] expected = new byte[8];
        for (int i = 0; i < 8; i++) expected[i] = i < size ? (byte)(0x10 + i) : (byte)0xee;
        Assert.Equal(expected, _run.Data(8).ToArray());
    }

    [Fact]
    public void Io_data_is_taken_from_data_offset_not_a_fixed_place()
    {
        _run.SetIo(Out, 1, DevicePort, count: 1, dataOffset: 0xf00);
        _run.Data(1)[0] = 0x11;
        _run.Data(1, offset: 0xf00)[0] = 0x22;

        Dispatch();

        Assert.Equal(0x22UL, _portDevice[0].Bytes);
    }

    [Fact]
    public void String_out_delivers_count_elements_in_order()
    {
        _run.SetIo(Out, 1, DevicePort, count: 5);
        "hello"u8.CopyTo(_run.Data(5));

        Dispatch();

        Assert.Equal(5, _portDevice.Count);
        for (int i = 0; i < 5; i++)
        {
            Assert.True(_portDevice[i].IsWrite);
            Assert.Equal(0UL, _portDevice[i].Offset);
            Assert.Equal(1, _portDevice[i].Length);
            Assert.Equal((ulong)"hello"[i], _portDevice[i].Bytes);
        }
    }

    [Fact]
    public void String_out_of_words_delivers_each_element_whole()
    {
        _run.SetIo(Out, 2, DevicePort + 2, count: 3);
        byte[] words = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];
        words.CopyTo(_run.Data(6));

        Dispatch();

        Assert.Equal(3, _portDevice.Count);
        Assert.Equal(new RecordingIoDevice.Access(true, 2, 2, 0x0201), _portDevice[0]);
        Assert.Equal(new RecordingIoDevice.Access(true, 2, 2, 0x0403), _portDevice[1]);
        Assert.Equal(new RecordingIoDevice.Access(true, 2, 2, 0x0605), _portDevice[2]);
    }

    [Fact]
    public void String_in_fills_count_elements_back_to_back()
    {
        _run.SetIo(In, 2, DevicePort, count: 3);
        _run.Data(8).Fill(0xee);

        Dispatch();

        Assert.Equal(3, _portDevice.Count);
        Assert.All(Enumerable.Range(0, 3), i => Assert.Equal(2, _portDevice[i].Length));
        Assert.Equal(new byte[] { 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0xee, 0xee }, _run.Data(8).ToArray());
    }

    [Fact]
    public void Count_zero_reaches_no_device()
    {
        _run.SetIo(Out, 1, DevicePort, count: 0);

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(0, _portDevice.Count);
    }

    [Theory]
    [InlineData((byte)1)]
    [InlineData((byte)2)]
    [InlineData((byte)4)]
    public void In_from_an_unknown_port_reads_all_ones(byte size)
    {
        _run.SetIo(In, size, 0x80, count: 1);
        _run.Data(8).Clear();

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        byte[] expected = new byte[8];
        expected.AsSpan(0, size).Fill(0xff);
        Assert.Equal(expected, _run.Data(8).ToArray());
        Assert.Equal(1, _pio.UnhandledReads);
        Assert.Equal(0x80UL, _pio.LastUnhandledAddress);
        Assert.Equal(0, _portDevice.Count);
    }

    [Fact]
    public void Out_to_an_unknown_port_is_dropped_and_counted()
    {
        _run.SetIo(Out, 1, 0x80, count: 1);
        _run.Data(1)[0] = 0x55;

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(1, _pio.UnhandledWrites);
        Assert.Equal(0, _portDevice.Count);
        Assert.Equal(0, _mmioDevice.Count);
    }

    [Fact]
    public void Port_io_never_reaches_the_mmio_bus()
    {
        var mmioAtPortAddress = new RecordingIoDevice();
        _mmio.Register(0x80, 1, mmioAtPortAddress, "decoy");
        _run.SetIo(Out, 1, 0x80, count: 1);

        Dispatch();

        Assert.Equal(0, mmioAtPortAddress.Count);
        Assert.Equal(1, _pio.UnhandledWrites);
    }

    // ---- MMIO ----------------------------------------------------------------------------------

    [Theory]
    [InlineData(0x0UL, 4u, 0x1122_3344UL)]
    [InlineData(0x10UL, 1u, 0x5aUL)]
    [InlineData(0xff8UL, 8u, 0x0102_0304_0506_0708UL)]
    public void Mmio_write_reaches_the_device_with_its_offset_and_bytes(ulong offset, uint length, ulong value)
    {
        _run.SetMmio(DeviceMmio + offset, length, isWrite: true, BitConverter.GetBytes(value));

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(1, _mmioDevice.Count);
        Assert.Equal(new RecordingIoDevice.Access(true, offset, (int)length, value), _mmioDevice[0]);
        Assert.Equal(0, _portDevice.Count);
    }

    [Fact]
    public void Mmio_read_fills_exactly_len_bytes_of_mmio_data()
    {
        _run.SetMmio(DeviceMmio + 0x20, 2, isWrite: false);
        _run.MmioDataBytes.Fill(0xee);

        Assert.Equal(VcpuExitAction.Continue, Dispatch());

        Assert.Equal(new RecordingIoDevice.Access(false, 0x20, 2, 0x8180), _mmioDevice[0]);
        Assert.Equal(new byte[] { 0x80, 0x81, 0xee, 0xee, 0xee, 0xee, 0xee, 0xee }, _run.MmioDataBytes.ToArray());
    }

    [Fact]
    public void Mmio_read_of_unmapped_space_reads_all_ones()
    {
        _run.SetMmio(0xfee0_0000, 4, isWrite: false);

        Dispatch();

        Assert.Equal(new byte[] { 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0 }, _run.MmioDataBytes.ToArray());
        Assert.Equal(1, _mmio.UnhandledReads);
    }

    [Fact]
    public void Mmio_length_above_8_is_clamped_to_the_data_array()
    {
        _run.SetMmio(DeviceMmio, 64, isWrite: false);

        Dispatch();

        Assert.Equal(8, _mmioDevice[0].Length);
    }

    [Fact]
    public void Interceptor_that_claims_a_write_keeps_it_from_the_bus()
    {
        var interceptor = new ClaimingMmioInterceptor(claimedPage: DeviceMmio);
        _dispatcher.MmioInterceptor = interceptor;
        _run.SetMmio(DeviceMmio + 0x40, 4, isWrite: true, [0xde, 0xad, 0xbe, 0xef]);

        Assert.Equal(VcpuExitAction.Continue, Dispatch(vcpuId: 3));

        Assert.Equal(1, interceptor.Claimed);
        Assert.Equal(3, interceptor.LastVcpuId);
        Assert.Equal(DeviceMmio + 0x40, interceptor.LastGpa);
        Assert.Equal(4, interceptor.LastLength);
        Assert.True(interceptor.LastWasWrite);
        Assert.Equal(0xefbe_addeUL, interceptor.LastWrittenBytes);
        Assert.Equal(0, _mmioDevice.Count);
    }

    [Fact]
    public void Interceptor_that_claims_a_read_supplies_the_data()
    {
        var interceptor = new ClaimingMmioInterceptor(claimedPage: DeviceMmio, readValue: 0xc3);
        _dispatcher.MmioInterceptor = interceptor;
        _run.SetMmio(DeviceMmio + 0x8, 2, isWrite: false);

        Dispatch(vcpuId: 1);

        Assert.Equal(1, interceptor.Claimed);
        Assert.False(interceptor.LastWasWrite);
        Assert.Equal(new byte[] { 0xc3, 0xc3, 0, 0, 0, 0, 0, 0 }, _run.MmioDataBytes.ToArray());
        Assert.Equal(0, _mmioDevice.Count);
    }

    [Fact]
    public void Accesses_the_interceptor_declines_go_to_the_bus()
    {
        var interceptor = new ClaimingMmioInterceptor(claimedPage: 0xfeb0_0000);
        _dispatcher.MmioInterceptor = interceptor;

        _run.SetMmio(DeviceMmio + 0x4, 4, isWrite: true, [1, 2, 3, 4]);
        Dispatch();
        _run.SetMmio(DeviceMmio + 0x8, 1, isWrite: false);
        Dispatch();

        Assert.Equal(2, interceptor.Calls);
        Assert.Equal(0, interceptor.Claimed);
        Assert.Equal(2, _mmioDevice.Count);
        Assert.Equal(new RecordingIoDevice.Access(true, 4, 4, 0x0403_0201), _mmioDevice[0]);
        Assert.Equal(new RecordingIoDevice.Access(false, 8, 1, 0x80), _mmioDevice[1]);
        Assert.Equal(0x80, _run.MmioDataBytes[0]);
    }

    [Fact]
    public void Interceptor_never_sees_port_io()
    {
        var interceptor = new ClaimingMmioInterceptor(claimedPage: 0);
        _dispatcher.MmioInterceptor = interceptor;
        _run.SetIo(Out, 1, DevicePort, count: 1);

        Dispatch();

        Assert.Equal(0, interceptor.Calls);
        Assert.Equal(1, _portDevice.Count);
    }

    // ---- exit actions --------------------------------------------------------------------------

    [Theory]
    [InlineData(KvmExitReason.KVM_EXIT_HLT, VcpuExitAction.Halt)]
    [InlineData(KvmExitReason.KVM_EXIT_INTR, VcpuExitAction.Continue)]
    [InlineData(KvmExitReason.KVM_EXIT_IRQ_WINDOW_OPEN, VcpuExitAction.Continue)]
    [InlineData(KvmExitReason.KVM_EXIT_SHUTDOWN, VcpuExitAction.Fault)]
    [InlineData(KvmExitReason.KVM_EXIT_FAIL_ENTRY, VcpuExitAction.Fault)]
    [InlineData(KvmExitReason.KVM_EXIT_INTERNAL_ERROR, VcpuExitAction.Fault)]
    [InlineData(KvmExitReason.KVM_EXIT_SYSTEM_EVENT, VcpuExitAction.Fault)]
    [InlineData(KvmExitReason.KVM_EXIT_UNKNOWN, VcpuExitAction.Fault)]
    [InlineData(KvmExitReason.KVM_EXIT_DEBUG, VcpuExitAction.Fault)]
    [InlineData((KvmExitReason)12345, VcpuExitAction.Fault)]
    public void Exit_reason_maps_to_its_action_without_touching_the_buses(KvmExitReason reason, VcpuExitAction expected)
    {
        // Leave io/mmio-looking data in the union: a non-IO exit must not act on it.
        _run.SetIo(Out, 1, DevicePort, count: 1);
        _run.SetExitReason(reason);

        Assert.Equal(expected, Dispatch());

        Assert.Equal(0, _portDevice.Count);
        Assert.Equal(0, _mmioDevice.Count);
    }

    // ---- hot path ------------------------------------------------------------------------------

    [Fact]
    public void Dispatching_io_and_mmio_exits_allocates_nothing()
    {
        var interceptor = new ClaimingMmioInterceptor(claimedPage: DeviceMmio + 0x1000);
        _dispatcher.MmioInterceptor = interceptor;

        long handled = RunExits(2_000); // warm up
        // The fewest bytes of three windows of 20,000 rounds: a path that allocates does so in every window,
        // while a one-off runtime allocation seen under a loaded full-suite run does not repeat.
        long allocated = long.MaxValue;
        for (int window = 0; window < 3; window++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            handled += RunExits(20_000);
            allocated = Math.Min(allocated, GC.GetAllocatedBytesForCurrentThread() - before);
        }

        Assert.Equal(0, allocated);
        Assert.Equal(62_000L * 7, handled);
    }

    // Each round: OUT, IN, string OUT of 4, MMIO write; returns how many device accesses there were.
    private long RunExits(int rounds)
    {
        long accesses = 0;
        for (int i = 0; i < rounds; i++)
        {
            _portDevice.Clear();
            _mmioDevice.Clear();
            _run.SetIo(Out, 1, DevicePort, count: 1);
            Dispatch();
            _run.SetIo(In, 1, DevicePort + 5, count: 1);
            Dispatch();
            _run.SetIo(Out, 1, DevicePort, count: 4);
            Dispatch();
            _run.SetMmio(DeviceMmio + 0x10, 4, isWrite: true);
            Dispatch();
            accesses += _portDevice.Count + _mmioDevice.Count;
        }
        return accesses;
    }
}
