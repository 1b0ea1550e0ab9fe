using KvmSharp.Devices.Serial;

namespace KvmSharp.Tests.Unit.Devices;

/// <summary>16550 register offsets and one-byte access helpers, so UART tests read like a driver.</summary>
internal static class UartRegister
{
    public const ulong Data = 0;            // RBR / THR / DLL
    public const ulong InterruptEnable = 1; // IER / DLM
    public const ulong InterruptId = 2;     // IIR read, FCR write
    public const ulong LineControl = 3;
    public const ulong ModemControl = 4;
    public const ulong LineStatus = 5;
    public const ulong ModemStatus = 6;
    public const ulong Scratch = 7;

    public static byte ReadRegister(this Serial16550 uart, ulong offset)
    {
        Span<byte> data = stackalloc byte[1];
        uart.Read(offset, data);
        return data[0];
    }

    public static void WriteRegister(this Serial16550 uart, ulong offset, byte value)
    {
        ReadOnlySpan<byte> data = [value];
        uart.Write(offset, data);
    }
}
