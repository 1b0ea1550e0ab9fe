using System.Diagnostics;
using Xunit;

namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>A real loop block device over a file (losetup), detached on dispose: a block device tests can break.</summary>
public sealed class LoopDevice : IDisposable
{
    private LoopDevice(string path) => Path = path;

    /// <summary>/dev/loopN.</summary>
    public string Path { get; }

    // Before Unavailable: static initializers run in order.
    private static string? Losetup { get; } =
        ((Environment.GetEnvironmentVariable("PATH") ?? "") + ":/usr/sbin:/sbin").Split(':').Select(dir => System.IO.Path.Combine(dir, "losetup")).FirstOrDefault(File.Exists);

    /// <summary>Why loop devices cannot be made here, or null.</summary>
    public static string? Unavailable { get; } = Probe();

    public static LoopDevice Attach(string file) => new(Run("-f", "--show", file).Trim());

    public void Dispose() => Run("-d", Path);

    private static string? Probe()
    {
        if (Environment.UserName != "root") return "making a loop device needs root";
        if (!File.Exists("/dev/loop-control")) return "/dev/loop-control is missing (no loop driver)";
        if (Losetup is null) return "losetup is not on PATH (apt-get install mount)";
        return null;
    }

    private static string Run(params string[] args)
    {
        var start = new ProcessStartInfo(Losetup!) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        string output = process.StandardOutput.ReadToEnd();
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"losetup {string.Join(' ', args)} failed ({process.ExitCode}): {error}");
        return output;
    }
}

/// <summary>A test that needs a real loop device: skipped with the reason where none can be made.</summary>
public sealed class LoopDeviceFactAttribute : FactAttribute
{
    public LoopDeviceFactAttribute()
    {
        if (LoopDevice.Unavailable is { } reason) Skip = reason;
    }
}
