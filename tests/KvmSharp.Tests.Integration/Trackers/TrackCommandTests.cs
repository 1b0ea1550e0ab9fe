using System.Diagnostics;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;
using Xunit.Abstractions;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Trackers;

/// <summary>`kvmsharp run --tracker-sock` and `kvmsharp track` as a user runs them: two processes, one VM.</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class TrackCommandTests(ITestOutputHelper output)
{
    [KvmFact]
    public void Kvmsharp_track_attached_to_kvmsharp_run_prints_the_guests_writes_until_the_vm_ends()
    {
        // The guest counts up in the first qword of 0x300000 until --timeout ends it.
        using var image = new FlatImageFile("tracked-counter", a =>
        {
            var loop = a.CreateLabel();
            a.mov(rbx, 0x300000UL);
            a.xor(ecx, ecx);
            a.Label(ref loop);
            a.inc(rcx);
            a.mov(__qword_ptr[rbx], rcx);
            a.jmp(loop);
        });
        string socket = Path.Combine(Path.GetTempPath(), $"kvmsharp-cli-{Guid.NewGuid():N}.sock");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (string a in new[] { typeof(KvmSharp.Program).Assembly.Location, "run", "--image", image.Path, "--entry", image.Entry, "--memory", "8M",
                     "--tracker-sock", socket, "--timeout", "10" })
            start.ArgumentList.Add(a);
        using var run = Process.Start(start)!;
        var runError = run.StandardError.ReadToEndAsync();
        var runOutput = run.StandardOutput.ReadToEndAsync();
        try
        {
            var clock = Stopwatch.StartNew();
            while (!File.Exists(socket) && clock.Elapsed < TimeSpan.FromSeconds(30) && !run.HasExited) Thread.Sleep(20);
            Assert.True(File.Exists(socket), "kvmsharp run made no tracker socket");
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket) & (UnixFileMode)0x1FF);

            // A deadline long enough for a loaded test machine: a missed ack would detach the tracker (exit 3).
            using var tracker = TrackerProcess.CSharp(socket, "0x300000+0x1000", synchronous: true, "--deadline", "30000");
            tracker.WaitForStderr("tracking", TimeSpan.FromSeconds(60));
            Assert.True(tracker.WaitForLine(l => l.StartsWith("write ", StringComparison.Ordinal), TimeSpan.FromSeconds(30)), $"no write seen: {tracker.StandardError}");
            Assert.Equal(0, tracker.WaitForExit(TimeSpan.FromSeconds(60))); // the VM ended at its timeout
            Assert.True(run.WaitForExit(TimeSpan.FromSeconds(30)));
            output.WriteLine(runError.Result);
            Assert.Equal(124, run.ExitCode);
            Assert.Contains("tracker attached", runError.Result);
            Assert.Contains("tracker detached", runError.Result);
            Assert.Contains("the VM ended", tracker.StandardError);

            var writes = tracker.Lines.Where(l => l.StartsWith("write ", StringComparison.Ordinal)).ToList();
            output.WriteLine($"{writes.Count} writes; first {writes[0]}; last {writes[^1]}");
            Assert.All(writes, w => Assert.Contains("gpa=0x300000 len=8", w));
            // Synchronous: every write of the counter from the first one seen on, none missing.
            var values = writes.Select(w => BitConverter.ToUInt64(Convert.FromHexString(w[(w.IndexOf("bytes=", StringComparison.Ordinal) + 6)..w.IndexOf(" source", StringComparison.Ordinal)]))).ToList();
            Assert.Equal(Enumerable.Range(0, values.Count).Select(i => values[0] + (ulong)i), values);
        }
        finally
        {
            if (!run.HasExited) run.Kill(entireProcessTree: true);
        }
        Assert.False(File.Exists(socket), "the socket file outlived the VM");
    }

    [Fact]
    public void Track_without_a_range_or_with_a_bad_one_says_what_to_give_and_exits_2()
    {
        var missing = KvmSharpProcess.Run(["track", "--tracker-sock", "/tmp/none.sock"]);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("--range is required", missing.StandardError);
        var bad = KvmSharpProcess.Run(["track", "--tracker-sock", "/tmp/none.sock", "--range", "0x2000-0x1000"]);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("the end must be above the start", bad.StandardError);
        var deadline = KvmSharpProcess.Run(["track", "--tracker-sock", "/tmp/none.sock", "--range", "0x1000", "--deadline", "50"]);
        Assert.Equal(2, deadline.ExitCode);
        Assert.Contains("--deadline only applies with --sync", deadline.StandardError);
    }

    [Fact]
    public void Track_with_no_vm_at_the_socket_says_so_and_exits_70()
    {
        string socket = Path.Combine(Path.GetTempPath(), $"kvmsharp-none-{Guid.NewGuid():N}.sock");
        var result = KvmSharpProcess.Run(["track", "--tracker-sock", socket, "--range", "0x300000"]);
        Assert.Equal(70, result.ExitCode);
        Assert.Contains($"cannot attach to {socket}", result.StandardError);
        Assert.Single(result.StandardError.Trim().Split('\n'));
    }

    [Fact]
    public void Run_with_a_tracker_socket_in_a_missing_directory_is_refused_before_anything_starts()
    {
        var result = KvmSharpProcess.Run(["run", "--tracker-sock", "/nonexistent-dir/vm.sock"]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--tracker-sock", result.StandardError);
        Assert.Contains("does not exist", result.StandardError);
    }
}
