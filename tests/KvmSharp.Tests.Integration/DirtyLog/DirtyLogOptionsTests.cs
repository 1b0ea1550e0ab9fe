using KvmSharp.Memory.DirtyLog;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>Dirty-log settings are checked before anything is created (no KVM needed).</summary>
public sealed class DirtyLogOptionsTests
{
    [Theory]
    [InlineData(256)]
    [InlineData(4096)]
    [InlineData(65536)]
    public void Power_of_two_ring_sizes_from_one_page_are_accepted(int entries) =>
        Assert.Null(new DirtyLogOptions { Mode = DirtyLogMode.Ring, RingEntries = entries }.Validate());

    [Theory]
    [InlineData(0)]
    [InlineData(128)]
    [InlineData(1000)]
    [InlineData(-4096)]
    [InlineData(1 << 21)]
    public void Other_ring_sizes_are_refused_naming_the_setting(int entries)
    {
        string? error = new DirtyLogOptions { RingEntries = entries }.Validate();
        Assert.NotNull(error);
        Assert.StartsWith($"dirty ring entries: {entries} is invalid", error);
    }

    [Fact]
    public void An_unknown_mode_is_refused()
    {
        Assert.Contains("use Bitmap, ManualProtect or Ring", new DirtyLogOptions { Mode = (DirtyLogMode)7 }.Validate());
    }

    [Fact]
    public void VmConfig_validation_includes_the_dirty_log_before_opening_kvm()
    {
        var config = new VmConfig
        {
            Image = new GuestImage([0xF4], 0x1000, 0x1000, Vmm.Boot.CpuMode.Long, "hlt"),
            SerialSink = new Devices.Serial.CapturingSerialSink(),
            KvmPath = "/nonexistent/kvm",
            DirtyLog = new DirtyLogOptions { RingEntries = 3 },
        };
        var error = Assert.Throws<ArgumentException>(() => VirtualMachine.Create(config));
        Assert.StartsWith("dirty ring entries: 3 is invalid", error.Message);
    }
}
