using KvmSharp.Devices.Virtio.Block;
using Xunit;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>`kvmsharp run --drive ...` refusals from the real executable: exit 2, one line, before any VM exists.</summary>
public sealed class DriveBadInputTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-drive-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public void An_image_another_vm_holds_writable_is_refused_as_locked()
    {
        string image = Path.Combine(_directory, "root.img");
        File.WriteAllBytes(image, new byte[1 << 20]);
        using var otherVm = BlockImage.Open(new DriveSpec(image)); // holds the write lock, as a running VM would
        string line = CliRun.Refused(2, ["run", "--kernel", Path.Combine(_directory, "bzImage"), "--drive", $"file={image}"]);
        Assert.Contains("invalid setting drive (--drive, KvmSharp:Drive, KVMSHARP__DRIVE)", line);
        Assert.Contains(image, line);
        Assert.Contains("lock", line, StringComparison.OrdinalIgnoreCase);
        Assert.Contains("(from --drive)", line);
    }

    [Fact]
    public void A_missing_image_and_a_bad_key_are_refused_with_the_fix()
    {
        string missing = Path.Combine(_directory, "missing.img");
        Assert.Contains(missing, CliRun.Refused(2, ["run", "--kernel", "bzImage", "--drive", $"file={missing}"]));
        Assert.Contains("colour", CliRun.Refused(2, ["run", "--kernel", "bzImage", "--drive", "file=x.img,colour=red"]));
        Assert.Contains("only applies with --kernel", CliRun.Refused(2, ["run", "--drive", $"file={missing}"]));
    }
}
