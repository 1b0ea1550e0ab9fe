using System.Globalization;
using System.Text;
using KvmSharp.Cli;

namespace KvmSharp.Exec;

/// <summary>
/// `kvmsharp exec -- CMD`: boots the guest kernel with fetch-guest.sh's initramfs plus a layer that
/// mounts the host's / read-only (virtio-fs) under a tmpfs overlay, runs CMD there in the caller's
/// directory and environment, streams its stdout and stderr to ours through two named virtio-console
/// ports, and returns the status the guest writes to a third. No status (panic, hang, --timeout): 124
/// with the serial console's tail on stderr.
/// </summary>
public static class ExecCommand
{
    public const int NoStatus = 124;
    private const int ConsoleTailLines = 40;

    /// <summary>Run; <paramref name="runVm"/> runs a VM from run settings (as flags) and returns its exit status.</summary>
    public static async Task<int> RunAsync(IReadOnlyList<string> args, Func<IReadOnlyDictionary<string, string?>, Task<int>> runVm)
    {
        var parsed = ExecArguments.Parse(args);
        string kernel, initrd;
        if (parsed.Kernel is not null && parsed.Initrd is not null) (kernel, initrd) = (parsed.Kernel, parsed.Initrd);
        else
        {
            var current = ExecGuestFiles.Resolve(Environment.GetEnvironmentVariable);
            kernel = parsed.Kernel ?? current.Kernel;
            initrd = parsed.Initrd ?? current.Initrd;
        }
        if (!File.Exists(initrd)) throw new OptionsException($"exec: initrd {initrd} does not exist; run scripts/guest/fetch-guest.sh (or give --initrd)");

        string work = Directory.CreateTempSubdirectory("kvmsharp-exec-").FullName;
        string? boundRoot = null;
        try
        {
            string request = ExecRequest.Script(parsed.Command, Directory.GetCurrentDirectory(), ExecRequest.CurrentEnvironment());
            string combined = Path.Combine(work, "initrd.img");
            using (var output = File.Create(combined))
                ExecGuestInit.WriteCombined(output, initrd, ExecGuestInit.Layer(request, parsed.WritableDirectories));
            string serial = Path.Combine(work, "console.log"), status = Path.Combine(work, "status");

            var flags = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase)
            {
                [RunSetting.Kernel.ConfigurationKey] = kernel,
                [RunSetting.Initrd.ConfigurationKey] = combined,
                [RunSetting.Cmdline.ConfigurationKey] = ExecGuestInit.Cmdline,
                [RunSetting.Memory.ConfigurationKey] = parsed.Memory,
                [RunSetting.Serial.ConfigurationKey] = serial,
                // Our stdout and stderr belong to the command: KvmSharp says only what went wrong.
                ["Logging:LogLevel:Default"] = "Warning",
            };
            if (parsed.Cpus is not null) flags[RunSetting.Cpus.ConfigurationKey] = parsed.Cpus;
            if (parsed.Timeout is not null) flags[RunSetting.Timeout.ConfigurationKey] = parsed.Timeout;
            // Not readonly=on: with Debian 12's C virtiofsd that remounts the shared directory read-only in its
            // namespace, and for / that includes the directory of its own socket. The guest mounts it ro, under the overlay.
            // virtiofsd's namespace sandbox cannot pivot_root into / itself: share a recursive bind of it (a slave, so
            // nothing propagates back), taken away when the VM is done.
            string rootView = Path.Combine(work, "root");
            Directory.CreateDirectory(rootView);
            if (Tool("mount", "--rbind", "/", rootView) is { } bindError)
                throw new OptionsException($"exec: cannot bind the host's / for the guest ({bindError}); kvmsharp exec needs root");
            boundRoot = rootView;
            if (Tool("mount", "--make-rslave", rootView) is { } slaveError)
                throw new OptionsException($"exec: cannot make the bind of / a slave ({slaveError})");
            var shares = new List<string> { $"path={rootView},tag={ExecGuestInit.RootTag}" };
            for (int i = 0; i < parsed.WritableDirectories.Count; i++)
                shares.Add($"path={parsed.WritableDirectories[i]},tag={ExecGuestInit.WritableTag(i)}");
            shares.AddRange(parsed.Shares);
            for (int i = 0; i < shares.Count; i++) flags[$"{RunSetting.Share.ConfigurationKey}:{i}"] = shares[i];
            // The command's output goes straight to our own stdout and stderr (a pipe, file or terminal).
            string[] ports = [$"name={ExecGuestInit.StdoutPort},path=/proc/self/fd/1", $"name={ExecGuestInit.StderrPort},path=/proc/self/fd/2", $"name={ExecGuestInit.StatusPort},path={status}"];
            for (int i = 0; i < ports.Length; i++) flags[$"{RunSetting.Port.ConfigurationKey}:{i}"] = ports[i];

            int vmStatus = await runVm(flags);
            if (ReadStatus(status) is { } commandStatus) return commandStatus;
            // A setting KvmSharp refused, or KvmSharp failing, keeps its own status (it said why on stderr).
            if (vmStatus is Program.InvalidSettings or Program.HostFailure) return vmStatus;
            Console.Error.WriteLine($"kvmsharp exec: the guest ended without the command's status (VM status {vmStatus}); console tail:");
            foreach (string line in Tail(serial, ConsoleTailLines)) Console.Error.WriteLine(line);
            return NoStatus;
        }
        finally
        {
            if (boundRoot is not null && Tool("umount", "-R", "-l", boundRoot) is { } error)
                Console.Error.WriteLine($"kvmsharp exec: cannot unmount {boundRoot}: {error}");
            // Never a recursive delete: had the unmount failed, it would reach into the host's /.
            try
            {
                foreach (string file in Directory.EnumerateFiles(work)) File.Delete(file);
                if (boundRoot is not null) Directory.Delete(boundRoot);
                Directory.Delete(work);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    // Runs a util-linux tool; null when it succeeded, else what it said.
    private static string? Tool(string name, params string[] args)
    {
        var start = new System.Diagnostics.ProcessStartInfo(name) { RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        try
        {
            using var process = System.Diagnostics.Process.Start(start)!;
            string error = process.StandardError.ReadToEnd().Trim();
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            return process.ExitCode == 0 ? null : $"{name} {string.Join(' ', args)}: {(error.Length > 0 ? error : $"status {process.ExitCode}")}";
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            return $"{name}: {e.Message}";
        }
    }

    /// <summary>The status line the guest wrote (0-255), or null.</summary>
    public static int? ReadStatus(string path)
    {
        if (!File.Exists(path)) return null;
        string text = File.ReadAllText(path).Trim();
        return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value) && value is >= 0 and <= 255 ? value : null;
    }

    private static IEnumerable<string> Tail(string path, int lines)
    {
        if (!File.Exists(path)) return ["(no console output)"];
        string text = Encoding.UTF8.GetString(File.ReadAllBytes(path)).Replace("\r", "");
        return text.Split('\n').TakeLast(lines);
    }
}
