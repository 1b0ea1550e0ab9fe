using KvmSharp.Cli;
using KvmSharp.Hosting;
using KvmSharp.Vmm.Boot;
using Microsoft.Extensions.Hosting.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace KvmSharp.Tests.Integration.Cli;

/// <summary>The hosted service's failure path: whatever goes wrong, the status is a failure (2 for the user's input, else 70), logged as one line.</summary>
public sealed class VmServiceFailureTests
{
    private sealed class RecordingLogger : ILogger<VmService>
    {
        public List<(LogLevel Level, string Message, Exception? Exception)> Entries { get; } = new();
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Entries.Add((logLevel, formatter(state, exception), exception));
    }

    [Fact]
    public async Task An_unexpected_exception_in_the_service_exits_70_never_0()
    {
        // Validation would refuse a directory as the serial file; bypassing it makes the service's own open fail
        // (an IOException for EISDIR, which only the service's catch-all handles).
        string directory = Path.GetTempPath();
        var options = new ValidatedRunOptions(64UL << 20, 1, null, null, CpuMode.Long, "/dev/kvm", directory, false, []);
        var exitCode = new ExitCodeHolder();
        var lifetime = new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance);
        var logger = new RecordingLogger();
        using var service = new VmService(options, exitCode, logger);
        service.AttachHost(lifetime);

        await service.StartAsync(CancellationToken.None);
        await service.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(70, exitCode.ExitCode);
        Assert.True(lifetime.ApplicationStopping.IsCancellationRequested, "the service stops the host");
        var error = Assert.Single(logger.Entries, e => e.Level == LogLevel.Error);
        Assert.Contains(directory.TrimEnd('/'), error.Message);
        Assert.DoesNotContain('\n', error.Message);
        Assert.Null(error.Exception);
        Assert.Contains(logger.Entries, e => e.Level == LogLevel.Debug && e.Exception is IOException);
    }

    // Validation would refuse both; bypassed, the VMM's own checks refuse them before any VM exists,
    // and what the user gave wrong is still exit status 2, not a host failure.
    [Theory]
    [InlineData("entry", "entry 0x8000: a long-mode image loads at or above 0x10000")]
    [InlineData("directory", "is a directory; give a file")]
    [InlineData("missing", "does not exist")]
    public async Task A_bad_input_the_vmm_refuses_after_validation_exits_2(string defect, string message)
    {
        string directory = Directory.CreateTempSubdirectory("kvmsharp-service-").FullName;
        try
        {
            string image = Path.Combine(directory, "image.bin");
            File.WriteAllBytes(image, [0xF4]);
            (string path, ulong entry) = defect switch
            {
                "entry" => (image, 0x8000UL),
                "directory" => (directory, 0x100000UL),
                _ => (Path.Combine(directory, "missing.bin"), 0x100000UL),
            };
            var options = new ValidatedRunOptions(64UL << 20, 1, path, entry, CpuMode.Long, "/nonexistent/kvm", Path.Combine(directory, "console.log"), false, []);
            var exitCode = new ExitCodeHolder();
            var lifetime = new ApplicationLifetime(NullLogger<ApplicationLifetime>.Instance);
            var logger = new RecordingLogger();
            using var service = new VmService(options, exitCode, logger);
        service.AttachHost(lifetime);

            await service.StartAsync(CancellationToken.None);
            await service.ExecuteTask!.WaitAsync(TimeSpan.FromSeconds(30));

            Assert.Equal(2, exitCode.ExitCode);
            var error = Assert.Single(logger.Entries, e => e.Level == LogLevel.Error);
            Assert.Contains(message, error.Message);
            Assert.DoesNotContain("/nonexistent/kvm", error.Message);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    [Fact]
    public void The_exit_status_is_a_failure_until_the_service_decides_one()
    {
        Assert.Equal(70, new ExitCodeHolder().ExitCode);
    }
}
