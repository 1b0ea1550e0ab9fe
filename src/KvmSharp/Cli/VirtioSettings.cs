using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Console;
using KvmSharp.Devices.Virtio.Net;
using KvmSharp.Devices.Virtio.Vsock;

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
        public IReadOnlyList<NetSpec> Nets { get; init; } = [];
        public VsockSpec? Vsock { get; init; }
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
        return new Result(drives, Rng: linux && !noRng, virtioConsole) { Ports = ValidatePorts(options, linux), Shares = ValidateShares(options, linux), Nets = ValidateNets(options, linux), Vsock = ValidateVsock(options.Vsock, linux) };
    }

    // --vsock cid=N,socket=PATH: the syntax, and a socket directory no other user can write (checked, not created: no change of state).
    private static VsockSpec? ValidateVsock(string? text, bool linux)
    {
        if (text is null) return null;
        if (!linux) throw new OptionsException(RunSetting.Vsock, text, "--vsock only applies with --kernel (virtio devices are for Linux guests)");
        if (!VsockSpec.TryParse(text, out var spec, out string? error)) throw new OptionsException(RunSetting.Vsock, text, error!.StartsWith("--vsock: ", StringComparison.Ordinal) ? error[9..] : error);
        if (VsockSocketPath.WhyUnsafe(spec!.SocketPath) is { } unsafeReason) throw new OptionsException(RunSetting.Vsock, text, $"socket={spec.SocketPath}: {unsafeReason}");
        return spec;
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

    // --net: the syntax, no tap, id or MAC twice, and each tap opens as the VM will open it (missing,
    // not a tap, no permission, busy: exit 2; a host without /dev/net/tun: a host failure, exit 70).
    private static List<NetSpec> ValidateNets(RunOptions options, bool linux)
    {
        var texts = options.List(RunSetting.Net);
        if (!linux && texts.Count > 0) throw new OptionsException(RunSetting.Net, texts[0], "--net only applies with --kernel (virtio devices are for Linux guests)");
        var nets = new List<NetSpec>();
        var seen = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (string text in texts)
        {
            if (!NetSpec.TryParse(text, out var spec, out string? error)) throw new OptionsException(RunSetting.Net, text, WithoutPrefix(error!, "--net: "));
            foreach (string key in (string[])[$"tap {spec!.Tap}", $"MAC {spec.EffectiveMac}", $"id {spec.DisplayName}"])
            {
                if (seen.TryGetValue(key, out string? earlier))
                    throw new OptionsException(RunSetting.Net, text, $"the {key} is already used by '{earlier}'; give each NIC its own tap, MAC and id");
                seen[key] = text;
            }
            try
            {
                TapDevice.Open(spec.Tap).Dispose();
            }
            catch (TapException e) when (!e.IsHostFailure)
            {
                throw new OptionsException(RunSetting.Net, text, WithoutPrefix(e.Message, $"--net tap={spec.Tap}: "));
            }
            nets.Add(spec);
        }
        return nets;
    }

    private static string WithoutPrefix(string message, string prefix)
        => message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;

    // BlockImageException already starts with "--drive file=PATH: "; the OptionsException names the setting itself.
    private static string WithoutDrivePrefix(string message, string path)
    {
        string prefix = $"--drive file={path}: ";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;
    }
}
