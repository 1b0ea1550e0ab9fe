using KvmSharp.Devices.Debug;
using KvmSharp.Devices.FwCfg;
using KvmSharp.Devices.Legacy;
using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Boot.Acpi;

namespace KvmSharp.Cli;

/// <summary>
/// --debug-exit [port=P][,width=1|2|4][,qemu=on|off], checked before the VM exists: the syntax, and that
/// the port does not land on a port another device of this guest already answers (where a write would
/// never reach it, or the VM would fail to start).
/// </summary>
internal static class DebugExitSettings
{
    // Ports KVM's in-kernel PIC, PIT and ELCR take, and KvmSharp's devices of a Linux or multiboot guest.
    private static readonly (int Start, int Length, string Name)[] KernelGuestPorts =
    [
        (0x20, 2, "the PIC"), (0xa0, 2, "the PIC"), (0x40, 4, "the PIT"), (0x4d0, 2, "the ELCR"),
        ((int)I8042Controller.BasePort, (int)I8042Controller.RegisterBlockLength, "the i8042"),
        ((int)CmosRtc.BasePort, (int)CmosRtc.RegisterBlockLength, "the CMOS clock"),
        (AcpiTables.Pm1EventBlock, AcpiTables.PmPortsLength, "the ACPI PM ports"),
        (FwCfgDevice.SelectorPort, (int)FwCfgDevice.PortCount, "fw_cfg"),
        .. QuietPorts.DefaultRanges.Select(r => ((int)r.BasePort, (int)r.Length, $"the quiet port range '{r.Name}'")),
    ];

    public static DebugExitSpec Validate(RunOptions options, ushort serialPort, bool kernel)
    {
        if (options.DebugExit is not { } text) return DebugExitSpec.Default;
        if (!DebugExitSpec.TryParse(text, out var spec, out string? error)) throw new OptionsException(RunSetting.DebugExit, text, error!);
        var taken = KernelGuestPorts.Where(_ => kernel).Prepend((serialPort, (int)Serial16550.RegisterBlockLength, "the serial port"));
        foreach (var (start, length, name) in taken)
            if (spec!.Overlaps(start, length))
                throw new OptionsException(RunSetting.DebugExit, text,
                    $"ports 0x{spec.Port:x}-0x{spec.Port + spec.Width - 1:x} overlap {name} at 0x{start:x}-0x{start + length - 1:x}; give another port, e.g. port=0xf4 (QEMU's isa-debug-exit) or 0x501");
        return spec!;
    }
}
