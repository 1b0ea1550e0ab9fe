using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Unit.Devices.Virtio;

/// <summary>A test that needs fallocate(PUNCH_HOLE) in the temp directory's filesystem: skipped with the reason where it is refused.</summary>
public sealed class HolePunchFactAttribute : FactAttribute
{
    private static readonly string? SkipReason = Probe();

    public HolePunchFactAttribute()
    {
        if (SkipReason is not null)
        {
            Skip = SkipReason;
        }
    }

    private static string? Probe()
    {
        using var image = new TempImage(8, "probe.img");
        using var opened = BlockImage.Open(new DriveSpec(image.Path));
        return opened.CanPunchHoles ? null : $"the filesystem of {Path.GetTempPath()} refuses fallocate(PUNCH_HOLE | KEEP_SIZE), so discard is not offered there";
    }
}
