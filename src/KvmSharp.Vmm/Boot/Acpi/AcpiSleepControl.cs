using System.Buffers.Binary;
using KvmSharp.Devices.Bus;

namespace KvmSharp.Vmm.Boot.Acpi;

/// <summary>
/// The PM1a event (status, enable) and control registers the FADT points at. ACPI is always on
/// (SCI_EN reads 1, there is no SMI command port); no event ever fires, but the enable bits hold
/// what the guest writes so ACPICA sees working hardware. A poweroff writes SLP_EN with
/// SLP_TYP = S5 (from the DSDT's \_S5) to PM1a_CNT.
/// </summary>
public sealed class AcpiSleepControl(Action powerOff) : IBusDevice
{
    private const int EnableOffset = 2, ControlOffset = AcpiTables.Pm1ControlBlock - AcpiTables.Pm1EventBlock;
    private const ushort SciEnable = 1, SleepEnable = 1 << 13;
    private readonly byte[] _registers = new byte[AcpiTables.PmPortsLength];

    public void Read(ulong offset, Span<byte> data)
    {
        data.Clear();
        lock (_registers)
        {
            for (int i = 0; i < data.Length && offset + (ulong)i < (ulong)_registers.Length; i++) data[i] = _registers[(int)offset + i];
        }
        if (offset == ControlOffset) data[0] |= (byte)SciEnable;
    }

    public void Write(ulong offset, ReadOnlySpan<byte> data)
    {
        if (offset is EnableOffset or ControlOffset)
        {
            lock (_registers)
            {
                for (int i = 0; i < data.Length && offset + (ulong)i < (ulong)_registers.Length; i++) _registers[(int)offset + i] = data[i];
            }
        }
        if (offset != ControlOffset || data.Length < 2) return;
        ushort value = BinaryPrimitives.ReadUInt16LittleEndian(data);
        if ((value & SleepEnable) != 0 && ((value >> 10) & 7) == AcpiTables.SleepTypeS5) powerOff();
    }
}
