using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Vsock;

namespace KvmSharp.Cli;

/// <summary>
/// The virtio settings of `run` (--drive, --no-rng, --console), checked before the VM exists: each
/// drive's syntax, that no image is given twice, and that each image opens and locks as the VM will
/// open it (missing, unreadable, read-only for a writable drive, locked by another VM: exit 2).
/// </summary>
internal static class VirtioSettings
{
    public sealed record Result(IReadOnlyList<DriveSpec> Drives, bool Rng, bool VirtioConsole, VsockSpec? Vsock = null);

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
        return new Result(drives, Rng: linux && !noRng, virtioConsole, ValidateVsock(options.Vsock, linux));
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

    // BlockImageException already starts with "--drive file=PATH: "; the OptionsException names the setting itself.
    private static string WithoutDrivePrefix(string message, string path)
    {
        string prefix = $"--drive file={path}: ";
        return message.StartsWith(prefix, StringComparison.Ordinal) ? message[prefix.Length..] : message;
    }
}
