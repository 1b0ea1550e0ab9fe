namespace KvmSharp.Terminal;

/// <summary>What a key typed after the escape prefix asks the VMM to do.</summary>
public enum ConsoleCommand
{
    /// <summary>Nothing for the VMM: the byte (if any) goes to the guest.</summary>
    None,

    /// <summary>Ctrl-A x: stop the VM and exit.</summary>
    Quit,

    /// <summary>Ctrl-A h (or ?): print the escape keys.</summary>
    Help,
}

/// <summary>
/// QEMU-style escape keys on a raw console: Ctrl-A then a letter is a command for the VMM, Ctrl-A Ctrl-A sends one
/// Ctrl-A to the guest, and any other key after Ctrl-A is swallowed (as QEMU does). Every other byte goes to the guest.
/// </summary>
public sealed class ConsoleEscape
{
    /// <summary>Ctrl-A.</summary>
    public const byte Prefix = 0x01;

    /// <summary>Shown by Ctrl-A h.</summary>
    public const string Help =
        "Console escape keys (Ctrl-A, then):\r\n" +
        "  x       stop the VM and exit\r\n" +
        "  h or ?  print this help\r\n" +
        "  Ctrl-A  send Ctrl-A to the guest\r\n";

    private bool _afterPrefix;

    /// <summary>
    /// Decode one typed byte. Returns true when <paramref name="toGuest"/> holds a byte for the guest; sets
    /// <paramref name="command"/> when the byte completed an escape command.
    /// </summary>
    public bool Decode(byte typed, out byte toGuest, out ConsoleCommand command)
    {
        toGuest = typed;
        command = ConsoleCommand.None;
        if (!_afterPrefix)
        {
            if (typed == Prefix)
            {
                _afterPrefix = true;
                return false;
            }

            return true;
        }

        _afterPrefix = false;
        switch (typed)
        {
            case Prefix:
                return true;
            case (byte)'x' or (byte)'X':
                command = ConsoleCommand.Quit;
                return false;
            case (byte)'h' or (byte)'H' or (byte)'?':
                command = ConsoleCommand.Help;
                return false;
            default:
                return false;
        }
    }
}
