using KvmSharp.Devices.Bus;
using KvmSharp.Devices.Serial;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Machine.Allocation;
using Xunit;

namespace KvmSharp.Tests.Integration.Seams;

/// <summary>Composition by attach steps: the standard devices, a configured device with allocated resources, a failing step.</summary>
public sealed class MachineBuilderTests
{
    private sealed class Scratch : IBusDevice, IDisposable
    {
        public bool Disposed;
        public void Read(ulong offset, Span<byte> data) => data.Fill(0x42);
        public void Write(ulong offset, ReadOnlySpan<byte> data) { }
        public void Dispose() => Disposed = true;
    }

    [Fact]
    public void A_flat_image_gets_serial_and_debug_exit_a_linux_guest_also_the_pc_legacy_devices()
    {
        Assert.Equal(["serial0", "debug-exit"], MachineBuilder.For(Config()).Steps.Select(s => s.Name));
        var linux = Config() with { Image = null, Linux = new KvmSharp.Vmm.Boot.Linux.LinuxBootConfig("/nonexistent/bzImage", null, "") };
        Assert.Equal(["serial0", "debug-exit", "pc-legacy"], MachineBuilder.For(linux).Steps.Select(s => s.Name));
        var extra = Config() with { Devices = [new DeviceAttachment("scratch", _ => { })] };
        Assert.Equal(["serial0", "debug-exit", "scratch"], MachineBuilder.For(extra).Steps.Select(s => s.Name));
    }

    [KvmFact]
    public void A_configured_device_is_attached_with_allocated_mmio_and_disposed_with_the_vm()
    {
        var device = new Scratch();
        AddressWindow bar = default;
        var config = Config() with
        {
            Devices = [new DeviceAttachment("scratch", machine =>
            {
                bar = machine.Resources.Mmio32.Allocate(0x1000, "scratch");
                machine.MmioBus.Register(bar.Start, bar.Size, machine.Own(device), "scratch");
            })],
        };
        var vm = VirtualMachine.Create(config);
        try
        {
            Assert.Contains(vm.PortBus.Ranges, r => r.Name == "serial0 (16550A)");
            Assert.Contains(vm.PortBus.Ranges, r => r.Name == "debug-exit");
            Assert.Equal(MachineResources.PciHoleStart, bar.Start);
            Span<byte> data = stackalloc byte[4];
            Assert.True(vm.MmioBus.Read(bar.Start + 8, data));
            Assert.Equal(0x42, data[0]);
            Assert.False(device.Disposed);
        }
        finally
        {
            vm.Dispose();
        }
        Assert.True(device.Disposed);
    }

    [KvmFact]
    public void A_failing_attach_step_fails_creation_naming_the_device()
    {
        var config = Config() with { Devices = [new DeviceAttachment("broken-thing", _ => throw new InvalidOperationException("no backing file"))] };
        var error = Assert.Throws<DeviceAttachException>(() => VirtualMachine.Create(config));
        Assert.Equal("broken-thing", error.Device);
        Assert.Equal("attaching broken-thing: no backing file", error.Message);
    }

    private static VmConfig Config() => new()
    {
        MemoryBytes = 4UL << 20,
        Image = TestGuest.LongMode(a => TestGuest.ExitWith(a, 0)),
        SerialSink = new CapturingSerialSink(),
    };
}
