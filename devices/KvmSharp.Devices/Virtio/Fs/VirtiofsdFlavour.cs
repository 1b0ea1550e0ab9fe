using System.Diagnostics;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>
/// Which options a virtiofsd takes, read from its --help: the Rust virtiofsd (package virtiofsd) has
/// --shared-dir and, since 1.7, --readonly; QEMU's C virtiofsd (Debian 12) takes -o source= and has no
/// read-only mode.
/// </summary>
internal sealed record VirtiofsdFlavour(bool SharedDirOption, bool ReadOnlyOption)
{
    public static VirtiofsdFlavour Probe(string binary)
    {
        var start = new ProcessStartInfo(binary, "--help")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        using var process = Process.Start(start) ?? throw new VirtiofsdException($"cannot run {binary} --help");
        process.StandardInput.Close();
        var error = process.StandardError.ReadToEndAsync();
        string help = process.StandardOutput.ReadToEnd() + error.GetAwaiter().GetResult();
        if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
        {
            process.Kill();
            throw new VirtiofsdException($"{binary} --help did not finish within 10 s");
        }

        return new VirtiofsdFlavour(help.Contains("--shared-dir", StringComparison.Ordinal), help.Contains("--readonly", StringComparison.Ordinal));
    }
}
