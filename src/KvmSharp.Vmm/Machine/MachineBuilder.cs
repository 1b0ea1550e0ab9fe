namespace KvmSharp.Vmm.Machine;

/// <summary>
/// The list of attach steps a <see cref="VirtualMachine"/> runs, in order, while it is created: the
/// standard devices for its kind of guest (<see cref="StandardDevices"/>), then the configuration's
/// own (<see cref="VmConfig.Devices"/>). A step that throws fails the VM's creation with the step named.
/// </summary>
public sealed class MachineBuilder
{
    private readonly List<DeviceAttachment> _steps = new();

    public IReadOnlyList<DeviceAttachment> Steps => _steps;

    public MachineBuilder Attach(string name, AttachStep step)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(step);
        _steps.Add(new DeviceAttachment(name, step));
        return this;
    }

    public MachineBuilder Attach(DeviceAttachment attachment) => Attach(attachment.Name, attachment.Attach);

    /// <summary>The steps for <paramref name="config"/>: serial and debug-exit always, the PC's legacy devices for Linux and multiboot, fw_cfg for multiboot, then the configured devices.</summary>
    public static MachineBuilder For(VmConfig config)
    {
        var builder = new MachineBuilder()
            .Attach("serial0", StandardDevices.Serial)
            .Attach("debug-exit", StandardDevices.DebugExit);
        if (config.Linux is not null || config.Multiboot is not null) builder.Attach("pc-legacy", StandardDevices.PcLegacy);
        if (config.Multiboot is not null) builder.Attach("fw_cfg", StandardDevices.FwCfg);
        foreach (var device in config.Devices) builder.Attach(device);
        return builder;
    }

    internal void AttachAll(MachineContext machine)
    {
        foreach (var step in _steps)
        {
            try
            {
                step.Attach(machine);
            }
            catch (Exception e) when (e is not DeviceAttachException)
            {
                throw new DeviceAttachException(step.Name, e);
            }
        }
    }
}

/// <summary>A device's attach step failed; the VM was not created.</summary>
public sealed class DeviceAttachException(string device, Exception inner)
    : Exception($"attaching {device}: {inner.Message}", inner)
{
    public string Device { get; } = device;
}
