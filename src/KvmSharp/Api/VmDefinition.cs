using System.Globalization;
using System.Text.RegularExpressions;
using KvmSharp.Cli;
using KvmSharp.Devices.Virtio.Block;

namespace KvmSharp.Api;

/// <summary>
/// The VM as the API's bodies (and --config-file) describe it, mapped onto `run`'s own settings (--memory, --cpus,
/// --kernel, --initrd, --cmdline, --drive), so the API and the command line share one validation
/// (<see cref="RunOptions.Validate()"/>). Immutable: each accepted request makes a new one.
/// </summary>
public sealed partial record VmDefinition(MachineConfig? Machine, BootSource? Boot, IReadOnlyList<Drive> Drives)
{
    public static readonly VmDefinition Empty = new(null, null, []);

    /// <summary>What the network-interfaces and vsock bodies get until those devices land.</summary>
    public const string NetworkNotSupported = "network interfaces are not supported yet (virtio-net lands with its own change); remove network-interfaces";
    public const string VsockNotSupported = "vsock is not supported yet (virtio-vsock lands with its own change); remove vsock";

    [GeneratedRegex("^[A-Za-z0-9_-]{1,64}$")]
    private static partial Regex DriveIdPattern();

    /// <summary>A body's own rules (required fields, ids), before the settings are checked; null when fine.</summary>
    public static string? Check(MachineConfig body) =>
        body.VcpuCount is null || body.MemSizeMib is null ? "machine-config needs vcpu_count and mem_size_mib" : null;

    public static string? Check(BootSource body) =>
        string.IsNullOrWhiteSpace(body.KernelImagePath) ? "boot-source needs kernel_image_path (a Linux bzImage or PVH vmlinux)" : null;

    public static string? Check(Drive body, string? idInPath = null)
    {
        if (body.DriveId is null || !DriveIdPattern().IsMatch(body.DriveId))
            return "drive_id must be 1 to 64 letters, digits, '_' or '-'";
        if (idInPath is not null && idInPath != body.DriveId) return $"drive_id '{body.DriveId}' differs from the path's '{idInPath}'";
        if (string.IsNullOrWhiteSpace(body.PathOnHost)) return "a drive needs path_on_host (a raw disk image)";
        return null;
    }

    /// <summary>This definition with <paramref name="drive"/> added, or replacing the drive of the same id; the root device first.</summary>
    public VmDefinition WithDrive(Drive drive)
    {
        var drives = Drives.ToList();
        int at = drives.FindIndex(d => d.DriveId == drive.DriveId);
        if (at >= 0) drives[at] = drive;
        else drives.Add(drive);
        if (drive.IsRootDevice == true)
        {
            drives = drives.Select(d => d.DriveId != drive.DriveId && d.IsRootDevice == true ? d with { IsRootDevice = false } : d).ToList();
            drives.Remove(drive);
            drives.Insert(0, drive);
        }
        return this with { Drives = drives };
    }

    /// <summary>The settings this definition gives, as (setting, value); drives as one list.</summary>
    public IEnumerable<(RunSetting Setting, string Value)> Settings()
    {
        if (Machine is { } machine)
        {
            if (machine.MemSizeMib is { } mib) yield return (RunSetting.Memory, $"{mib.ToString(CultureInfo.InvariantCulture)}M");
            if (machine.VcpuCount is { } cpus) yield return (RunSetting.Cpus, cpus.ToString(CultureInfo.InvariantCulture));
        }
        if (Boot is { } boot)
        {
            if (boot.KernelImagePath is { } kernel) yield return (RunSetting.Kernel, kernel);
            if (boot.InitrdPath is { } initrd) yield return (RunSetting.Initrd, initrd);
            if (boot.BootArgs is { } args) yield return (RunSetting.Cmdline, args);
        }
    }

    /// <summary>The drives as --drive values (file=PATH,id=ID[,readonly=on][,serial=S]).</summary>
    public IReadOnlyList<string> DriveSpecs() => Drives.Select(ToDriveSpec).ToList();

    public static string ToDriveSpec(Drive drive)
    {
        string spec = $"file={Escape(drive.PathOnHost!)},id={drive.DriveId}";
        if (drive.IsReadOnly == true) spec += ",readonly=on";
        if (drive.Serial is { } serial) spec += $",serial={Escape(serial)}";
        return spec;
    }

    // --drive's syntax writes a comma inside a value twice.
    private static string Escape(string value) => value.Replace(",", ",,", StringComparison.Ordinal);

    /// <summary>Set these settings on <paramref name="options"/> (drives replace the list when any are defined).</summary>
    public void ApplyTo(RunOptions options)
    {
        foreach (var (setting, value) in Settings())
        {
            if (setting == RunSetting.Memory) options.Memory = value;
            else if (setting == RunSetting.Cpus) options.Cpus = value;
            else if (setting == RunSetting.Kernel) options.Kernel = value;
            else if (setting == RunSetting.Initrd) options.Initrd = value;
            else if (setting == RunSetting.Cmdline) options.Cmdline = value;
        }
        if (Drives.Count > 0) options.SetList(RunSetting.Drive, DriveSpecs());
    }

    /// <summary>The settings as configuration keys (KvmSharp:Memory, KvmSharp:Drive:0, ...), for the --config-file layer.</summary>
    public Dictionary<string, string?> ToConfigurationKeys()
    {
        var keys = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        foreach (var (setting, value) in Settings()) keys[setting.ConfigurationKey] = value;
        var drives = DriveSpecs();
        for (int i = 0; i < drives.Count; i++) keys[$"{RunSetting.Drive.ConfigurationKey}:{i}"] = drives[i];
        return keys;
    }

    /// <summary>A config document as a definition; the first problem as a message (the document's own rules, not the settings').</summary>
    public static VmDefinition FromDocument(VmConfigDocument document, out string? problem)
    {
        problem = null;
        var definition = Empty;
        if (document.NetworkInterfaces is { ValueKind: not System.Text.Json.JsonValueKind.Null }) problem = NetworkNotSupported;
        else if (document.Vsock is { ValueKind: not System.Text.Json.JsonValueKind.Null }) problem = VsockNotSupported;
        else if (document.MachineConfig is { } machine && Check(machine) is { } bad) problem = bad;
        else if (document.BootSource is { } boot && Check(boot) is { } badBoot) problem = badBoot;
        if (problem is not null) return definition;
        definition = new VmDefinition(document.MachineConfig, document.BootSource, []);
        foreach (var drive in document.Drives ?? [])
        {
            if (Check(drive) is { } badDrive)
            {
                problem = $"drive '{drive.DriveId}': {badDrive}";
                return Empty;
            }
            if (definition.Drives.Any(d => d.DriveId == drive.DriveId))
            {
                problem = $"drive_id '{drive.DriveId}' is given twice; give each drive once";
                return Empty;
            }
            definition = definition.WithDrive(drive);
        }
        return definition;
    }

    /// <summary>The document that describes <paramref name="options"/> (GET /vm/config).</summary>
    public static VmConfigDocument Describe(ValidatedRunOptions options) => new()
    {
        MachineConfig = new MachineConfig(options.Cpus, (long)(options.MemoryBytes >> 20)),
        BootSource = options.Kernel is null ? null : new BootSource(options.Kernel, options.Initrd, options.Cmdline),
        Drives = options.Drives.Select((spec, i) => new Drive(DriveId(spec, i), spec.Path, spec.ReadOnly, i == 0, spec.Serial)).ToList(),
    };

    /// <summary>A drive's id: its id=, else its Linux name (vda, vdb, ...).</summary>
    public static string DriveId(DriveSpec spec, int index) => spec.Id ?? $"vd{(char)('a' + Math.Min(index, 25))}";
}
