using KvmSharp.Devices.Debug;
using KvmSharp.Devices.FwCfg;
using KvmSharp.Devices.Legacy;
using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Boot.Acpi;

namespace KvmSharp.Vmm.Machine;

/// <summary>The attach steps every VM (serial, debug-exit) or every Linux and multiboot VM (the PC's legacy devices, fw_cfg) gets.</summary>
public static class StandardDevices
{
    /// <summary>COM1's ISA interrupt.</summary>
    public const uint SerialIrq = 4;

    /// <summary>The PS/2 keyboard's ISA interrupt.</summary>
    public const uint KeyboardIrq = 1;

    /// <summary>The 16550A at the configured port, on IRQ 4 when the VM has an irqchip.</summary>
    public static void Serial(MachineContext machine)
    {
        var serial = new Serial16550(machine.Config.SerialSink, machine.HasIrqchip ? machine.IrqLine(SerialIrq) : null);
        machine.PortBus.Register(machine.Config.SerialPort, Serial16550.RegisterBlockLength, serial, "serial0 (16550A)");
        machine.Machine.Serial = serial;
    }

    /// <summary>The port a test guest writes its exit status to.</summary>
    public static void DebugExit(MachineContext machine)
    {
        var config = machine.Config;
        var debugExit = config.DebugExitQemu
            ? new DebugExitPort(config.DebugExitWidth, (value, status) => machine.End(new VmOutcome(VmExitKind.GuestExit, status,
                $"guest wrote 0x{value:x} to isa-debug-exit port 0x{config.DebugExitPort:x}: status (0x{value:x} << 1) | 1 = {status}")))
            : new DebugExitPort(status => machine.End(VmOutcome.GuestExit(status)), config.DebugExitWidth);
        machine.PortBus.Register(config.DebugExitPort, debugExit.Width, debugExit, "debug-exit");
        machine.Machine.DebugExit = debugExit;
    }

    /// <summary>QEMU's firmware configuration ports (signature, id, vCPU count, RAM size, an empty file directory): multiboot test kernels read them.</summary>
    public static void FwCfg(MachineContext machine) =>
        machine.PortBus.Register(FwCfgDevice.SelectorPort, FwCfgDevice.PortCount, FwCfgDevice.ForMachine(machine.Config.Cpus, machine.Config.MemoryBytes), "fw_cfg");

    /// <summary>What Linux probes on a PC beyond the in-kernel PIC, PIT and IOAPIC: i8042, CMOS clock, ACPI PM ports, quiet ports.</summary>
    public static void PcLegacy(MachineContext machine)
    {
        var vm = machine.Machine;
        var keyboard = new I8042Controller(() => machine.End(VmOutcome.Reboot("i8042 reset line")), machine.IrqLine(KeyboardIrq));
        machine.PortBus.Register(I8042Controller.BasePort, I8042Controller.RegisterBlockLength, keyboard, "i8042");
        vm.Keyboard = keyboard;
        var rtc = new CmosRtc();
        ulong memory = machine.Config.MemoryBytes;
        rtc.SetMemorySizes(Math.Min(memory, VirtualMachine.LowRamLimit), memory > VirtualMachine.LowRamLimit ? memory - VirtualMachine.LowRamLimit : 0);
        machine.PortBus.Register(CmosRtc.BasePort, CmosRtc.RegisterBlockLength, rtc, "cmos-rtc");
        vm.Rtc = rtc;
        var sleepControl = new AcpiSleepControl(() => machine.End(VmOutcome.PowerOff()));
        machine.PortBus.Register(AcpiTables.Pm1EventBlock, AcpiTables.PmPortsLength, sleepControl, "acpi-pm1");
        var quiet = new QuietPorts(() => machine.End(VmOutcome.Reboot("port 0x92 reset")));
        foreach (var window in quiet.Windows) machine.PortBus.Register(window.BasePort, window.Length, window, window.Name);
        vm.QuietPorts = quiet;
    }
}
