namespace KvmSharp.Vmm.Boot;

/// <summary>
/// A user-given input of the VM (memory size, cmdline, entry, a file's placement) cannot work, found
/// before the VM is created. <see cref="Input"/> says which; <see cref="Reason"/> is the message
/// without the input's name, for a front end that names the input its own way (the CLI: exit 2).
/// Files of the wrong kind, size or content are <see cref="InvalidDataException"/>s from
/// <see cref="GuestFile"/> and the parsers (a sealed type, hence this separate one): together they
/// are the VMM's validation errors, both exit status 2 in the CLI.
/// </summary>
public sealed class GuestInputException(GuestInput input, string message, string reason) : Exception(message)
{
    /// <summary>The message is "input: reason", e.g. "cmdline: 3000 bytes is longer than ...".</summary>
    public GuestInputException(GuestInput input, string reason) : this(input, $"{Subject(input)}: {reason}", reason) { }

    public GuestInput Input { get; } = input;
    public string Reason { get; } = reason;

    private static string Subject(GuestInput input) => input switch
    {
        GuestInput.CommandLine => "cmdline",
        GuestInput.Initrd => "initrd",
        GuestInput.Image => "guest image",
        _ => input.ToString().ToLowerInvariant(),
    };
}
