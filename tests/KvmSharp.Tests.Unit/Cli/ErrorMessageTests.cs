using KvmSharp.Cli;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using Xunit;

namespace KvmSharp.Tests.Unit.Cli;

/// <summary>What users read when something fails: errno by name and text, one line, no developer noise.</summary>
public sealed class ErrorMessageTests
{
    [Theory]
    [InlineData(21, "EISDIR (errno 21, Is a directory)")]
    [InlineData(25, "ENOTTY (errno 25, Inappropriate ioctl for device)")]
    [InlineData(22, "EINVAL (errno 22, Invalid argument)")]
    [InlineData(133, "EHWPOISON (errno 133, Memory page has hardware error)")]
    public void An_errno_is_named_numbered_and_explained(int errno, string text)
    {
        Assert.Equal(text, Errno.Describe(errno));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(41)]
    [InlineData(999)]
    [InlineData(-3)]
    public void An_errno_linux_does_not_define_is_only_numbered(int errno)
    {
        Assert.Equal($"errno {errno}", Errno.Describe(errno));
        Assert.Equal($"errno {errno}", Errno.Name(errno));
    }

    [Fact]
    public void Every_errno_up_to_133_except_the_two_gaps_has_a_name()
    {
        for (int errno = 1; errno <= 133; errno++)
            if (errno is not (41 or 58)) Assert.Matches("^E[A-Z0-9]+$", Errno.Name(errno));
    }

    [Fact]
    public void A_kvm_exception_names_the_operation_and_the_errno()
    {
        var e = new KvmException("open", Errno.EISDIR, "/tmp is a directory");

        Assert.Equal("open failed: EISDIR (errno 21, Is a directory): /tmp is a directory", e.Message);
        Assert.Equal("EISDIR", e.ErrnoName);
    }

    [Fact]
    public void A_kvm_exception_without_an_errno_does_not_invent_one()
    {
        Assert.Equal("KVM_GET_API_VERSION failed: version 11", new KvmException("KVM_GET_API_VERSION", 0, "version 11").Message);
        Assert.Equal("KVM_RUN failed: EINTR (errno 4, Interrupted system call)", new KvmException("KVM_RUN", Errno.EINTR).Message);
    }

    [Fact]
    public void The_parameter_name_dotnet_appends_does_not_reach_the_user()
    {
        var range = new ArgumentOutOfRangeException("gpa", "guest physical address 0xc0000000 is not backed by any memslot");
        var argument = new ArgumentException("image does not fit", "image");
        var withValue = new ArgumentOutOfRangeException("entry", 0x10000UL, "real-mode entry 0x10000 must be below 0x10000");

        Assert.Equal("guest physical address 0xc0000000 is not backed by any memslot", ErrorMessages.OneLine(range));
        Assert.Equal("image does not fit", ErrorMessages.OneLine(argument));
        Assert.Equal("real-mode entry 0x10000 must be below 0x10000", ErrorMessages.OneLine(withValue));
    }

    [Fact]
    public void A_message_is_one_line()
    {
        Assert.Equal("first second", ErrorMessages.OneLine(new InvalidOperationException("first\n  second\n")));
    }

    [Fact]
    public void Host_memory_is_read_from_memtotal()
    {
        string path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "MemFree:  1000 kB\nMemTotal:       24576000 kB\n");
            Assert.Equal(24576000UL * 1024, HostMemory.ReadTotal(path));
            File.WriteAllText(path, "MemTotal: lots kB\n");
            Assert.Null(HostMemory.ReadTotal(path));
            Assert.Null(HostMemory.ReadTotal(path + ".missing"));
            Assert.NotNull(HostMemory.ReadTotal());
        }
        finally
        {
            File.Delete(path);
        }
    }
}
