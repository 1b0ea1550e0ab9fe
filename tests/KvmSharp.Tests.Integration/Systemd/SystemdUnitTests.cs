using System.Diagnostics;
using System.Globalization;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Systemd;

/// <summary>
/// The shipped units (scripts/systemd/*.service) pass `systemd-analyze verify` silently and rate at most 3.0 in
/// `systemd-analyze security --offline=true`, through scripts/systemd/check-units.sh (which CI runs this way).
/// </summary>
public sealed class SystemdUnitTests
{
    private const double MaxExposure = 3.0;

    [SystemdAnalyzeFact]
    public void The_units_verify_and_their_exposure_is_at_most_3()
    {
        string script = Path.Combine(SourceTree.Root, "scripts", "systemd", "check-units.sh");
        var start = new ProcessStartInfo(script) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.Environment["MAX_EXPOSURE"] = MaxExposure.ToString(CultureInfo.InvariantCulture);
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(TimeSpan.FromMinutes(2)), "check-units.sh did not finish");
        Assert.True(process.ExitCode == 0, $"check-units.sh failed ({process.ExitCode}):\n{stdout}\n{stderr.Result}");

        // One figure per unit, the template rated as an instance.
        var exposures = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => line.Split(' '))
            .Where(fields => fields is ["exposure", _, _])
            .ToDictionary(fields => fields[1], fields => double.Parse(fields[2], CultureInfo.InvariantCulture));
        Assert.Contains("kvmsharp.service", exposures.Keys);
        Assert.Contains("kvmsharp@ci.service", exposures.Keys);
        Assert.All(exposures, e => Assert.InRange(e.Value, 0.0, MaxExposure));
    }

    [Fact]
    public void The_template_names_its_config_and_socket_per_instance_and_the_hardening_the_issue_asks_for()
    {
        string unit = File.ReadAllText(Path.Combine(SourceTree.Root, "scripts", "systemd", "kvmsharp@.service"));
        var settings = unit.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0 && !l.StartsWith('#')).ToHashSet();

        Assert.Contains(settings, l => l.StartsWith("ExecStart=", StringComparison.Ordinal) && l.Contains("--config-file /etc/kvmsharp/%i.json") && l.Contains("--api-sock /run/kvmsharp/%i/"));
        foreach (string expected in new[]
                 {
                     "Type=notify", "RuntimeDirectory=kvmsharp/%i", "DynamicUser=yes", "SupplementaryGroups=kvm", "DevicePolicy=closed",
                     "DeviceAllow=/dev/kvm rw", "ProtectSystem=strict", "PrivateTmp=yes", "NoNewPrivileges=yes", "RestrictAddressFamilies=AF_UNIX",
                     "CapabilityBoundingSet=", "SystemCallFilter=@system-service", "MemoryDenyWriteExecute=yes", "Restart=on-failure",
                 })
            Assert.Contains(expected, settings);
        Assert.Contains(settings, l => l.StartsWith("WatchdogSec=", StringComparison.Ordinal));
    }
}
