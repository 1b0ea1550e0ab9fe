using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Console;

namespace KvmSharp.Cli;

/// <summary>
/// The virtio settings of `run` (--drive, --no-rng, --console), checked before the VM exists: each
/// drive's syntax, that no image is given twice, and that each image opens and locks as the VM will
/// open it (missing, unreadable, read-only for a writable drive, locked by another VM: exit 2).
/// </summary>
internal static class VirtioSettings
{
    public sealed record Result(IReadOnlyList<DriveSpec> Drives, bool Rng, bool VirtioConsole)
    {
        public IReadOnlyList<ConsolePortSpec> Ports { get; init; } = [];
        public IReadOnlyList<Devices.Virtio.Fs.ShareOptions> Shares { get; init; } = [];
    }

    public static Result Validate(RunOptions options, bool linux)
    {
        bool noRng = RunOptions.Switch(RunSetting.NoRng, options.NoRng);
        bool virtioConsole = (options.Console ?? "serial").Trim().ToLowerInvariant() switch
        {
            "serial" => false,
            "virtio" => true,
            _ => throw new OptionsException(RunSetting.Console, options.Console!, "give serial or virtio"),
        };
        var texts = options.List(RunSetting.Drive);
        if (!linux)
        {
            if (texts.Count > 0) throw new OptionsException(RunSetting.Drive, texts[0], "--drive only applies with --kernel (virtio devices are for Linux guests)");
            if (virtioConsole) throw new OptionsException(RunSetting.Console, options.Console!, "--console virtio only applies with --kernel");
        }

        var drives = new List<DriveSpec>();
        var paths = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string text in texts)
        {
            if (!DriveSpec.TryParse(text, out var spec, out string? error)) throw new OptionsException(RunSetting.Drive, text, error!);
            string full = Path.GetFullPath(spec!.Path);
            if (paths.TryGetValue(full, out string? earlier))
                throw new OptionsException(RunSetting.Drive, text, $"the image is already attached by '{earlier}'; give each image once");
            paths[full] = text;
            try
            {
                BlockImage.Open(spec).Dispose();
            }
            catch (BlockImageException e)
            {
                throw new OptionsException(RunSetting.Drive, text, WithoutDrivePrefix(e.Message, spec.Path));
            }
            drives.Add(spec);
        }
        return new Result(drives, Rng: linux && !noRng, virtioConsole) { Ports = ValidatePorts(options, linux), Shares = ValidateShares(options, linux) };
    }

    // --share path=DIR,tag=TAG[,readonly=on]: syntax, an existing directory, unique tags, and a virtiofsd to run.
    private static IReadOnlyList<Devices.Virtio.Fs.ShareOptions> ValidateShares(RunOptions options, bool linux)
    {
        var texts = options.List(RunSetting.Share);
        var shares = new List<Devices.Virtio.Fs.ShareOptions>();
        foreach (string text in texts)
        {
            if (!linux) throw new OptionsException(RunSetting.Share, text, "--share only applies with --kernel (virtio devices are for Linux guests)");
            if (!Devices.Virtio.Fs.ShareOptions.TryParse(text, out var share, out string? error)) throw new OptionsException(RunSetting.Share, text, error!);
            if (shares.FirstOrDefault(s => s.Tag == share!.Tag) is { } earlier)
                throw new OptionsException(RunSetting.Share, text, $"tag '{share!.Tag}' is already used by '{earlier}'; give each share its own tag");
            if (Devices.Virtio.Fs.VirtiofsdBackend.Locate() is null)
                throw new OptionsException(RunSetting.Share, text, $"virtiofsd was not found on PATH or at {Devices.Virtio.Fs.VirtiofsdBackend.QemuVirtiofsdPath}; {Devices.Virtio.Fs.VirtiofsdBackend.InstallHint}");
            shares.Add(share!);
        }
        return shares;
    }

    // Each --port: its syntax, a name given once, and a host side the VM can open (nothing is created here).
    private static List<ConsolePortSpec> ValidatePorts(RunOptions options, bool linux)
    {
        var texts = options.List(RunSetting.Port);
        if (!linux && texts.Count > 0) throw new OptionsException(RunSetting.Port, texts[0], "--port only applies with --kernel (virtio devices are for Linux guests)");
        if (texts.Count > VirtioConsole.MaxNamedPorts) throw new OptionsException(RunSetting.Port, texts[^1], $"at most {VirtioConsole.MaxNamedPorts} ports; give fewer");
        var ports = new List<ConsolePortSpec>();
        var hostPaths = new HashSet<string>(StringComparer.Ordinal);
        foreach (string text in texts)
        {
            if (!ConsolePortSpec.TryParse(text, out var spec, out string? error)) throw new OptionsException(RunSetting.Port, text, StripFlag(error!));
            if (ports.Any(p => p.Name == spec!.Name)) throw new OptionsException(RunSetting.Port, text, $"name={spec!.Name} is given twice; give each port its own name");
            string hostPath = Path.GetFullPath(spec!.FilePath ?? spec.SocketPath!);
            if (!hostPaths.Add(hostPath)) throw new OptionsException(RunSetting.Port, text, $"{hostPath} is used by another port; give each port its own file or socket");
            if (HostSideProblem(spec, hostPath) is { } problem) throw new OptionsException(RunSetting.Port, text, problem);
            ports.Add(spec);
        }
        return ports;
    }

    private static string? HostSideProblem(ConsolePortSpec spec, string hostPath) => spec.FilePath is not null
        ? InputFiles.WhyNotWritable(hostPath) is { } file ? $"path={hostPath} {file}" : null
        : InputFiles.WhyNoSocket(hostPath) is { } socket ? $"socket={hostPath} {socket}" : null;

    // ConsolePortSpec's messages start with "--port: " or "--port NAME: "; the OptionsException names the setting itself.
    private static string StripFlag(string message) => message.StartsWith("--port: ", StringComparison.Ordinal) ? message["--port: ".Length..] : message;

    // BlockImageException already starts with "--drive file=PATH: "; the OptionsException names the setting itself.
    private static string WithoutDrivePrefix(string message, string path)
    {
        string prefix = $"--drive file={path}: ";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;
    }
}
