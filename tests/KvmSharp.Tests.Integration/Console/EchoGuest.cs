using Iced.Intel;
using KvmSharp.Tests.Integration.Infrastructure;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.SerialConsole;

/// <summary>
/// Guests for console tests, as flat images for `kvmsharp run --image`. The echo guest prints "READY\r\n", then polls
/// the UART and answers every received byte as "[XX]" in hex, so a test can tell the guest's echo from a local one and
/// see exactly which byte arrived (Enter as 0D, Ctrl-C as 03).
/// </summary>
public static class EchoGuest
{
    private const ushort Com1 = 0x3F8, LineStatus = Com1 + 5;

    public const string Ready = "READY";

    public static FlatImageFile Echo(string name) => new(name, a =>
    {
        var poll = a.CreateLabel();
        var hex = a.CreateLabel();
        foreach (char c in Ready + "\r\n") Put(a, (byte)c);

        a.Label(ref poll);
        a.mov(dx, LineStatus);
        a.@in(al, dx);
        a.test(al, 1); // data ready
        a.jz(poll);
        a.mov(dx, Com1);
        a.@in(al, dx);
        a.mov(bl, al);
        Put(a, (byte)'[');
        a.mov(al, bl);
        a.shr(al, 4);
        a.call(hex);
        a.mov(al, bl);
        a.and(al, 0x0F);
        a.call(hex);
        Put(a, (byte)']');
        a.jmp(poll);

        // al = 0..15 -> its hex digit out on COM1
        var digit = a.CreateLabel();
        a.Label(ref hex);
        a.add(al, (byte)'0');
        a.cmp(al, (byte)'9');
        a.jbe(digit);
        a.add(al, 7);
        a.Label(ref digit);
        a.mov(dx, Com1);
        a.@out(dx, al);
        a.ret();
    });

    /// <summary>Prints 'A' to the console as fast as it can, forever.</summary>
    public static FlatImageFile Chatter(string name) => new(name, a =>
    {
        var again = a.CreateLabel();
        a.mov(dx, Com1);
        a.mov(al, (byte)'A');
        a.Label(ref again);
        a.@out(dx, al);
        a.jmp(again);
    });

    /// <summary>Spins without a single exit (every vCPU), forever.</summary>
    public static FlatImageFile Spin(string name) => new(name, a =>
    {
        var again = a.CreateLabel();
        a.Label(ref again);
        a.pause();
        a.jmp(again);
    });

    private static void Put(Assembler a, byte value)
    {
        a.mov(dx, Com1);
        a.mov(al, value);
        a.@out(dx, al);
    }
}
