using KvmSharp.Devices.Virtio.Block;
using KvmSharp.Devices.Virtio.Net;

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
        public IReadOnlyList<NetSpec> Nets { get; init; } = [];
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
        var nets = ValidateNets(options, linux);
        return new Result(drives, Rng: linux && !noRng, virtioConsole) { Nets = nets };
    }

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
