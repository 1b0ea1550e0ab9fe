using System.CommandLine;

namespace KvmSharp.Cli;

/// <summary>`kvmsharp track`'s flags as given (checked by <see cref="TrackCommand"/>).</summary>
public sealed record TrackArguments(string? Socket, string? Range, bool Synchronous, string? Deadline, string? Ring);

/// <summary>The `track` verb: a reference out-of-process page tracker that prints events.</summary>
public sealed class TrackCommandLine
{
    private readonly Option<string> _socket = new("--tracker-sock") { Description = "The VM's tracker socket (kvmsharp run --tracker-sock PATH)", HelpName = "PATH" };
    private readonly Option<string> _range = new("--range") { Description = "Guest-physical ranges to track: GPA, GPA-GPA (end exclusive) or GPA+SIZE, comma-separated", HelpName = "RANGES" };
    private readonly Option<bool> _sync = new("--sync") { Description = "Synchronous: the writing vCPU waits for this tracker's ack of each event [default: asynchronous]" };
    private readonly Option<string> _deadline = new("--deadline") { Description = "With --sync: ms the VMM waits for an ack before it detaches this tracker [default: 1000]", HelpName = "MS" };
    private readonly Option<string> _ring = new("--ring") { Description = "Event ring bytes, a power of two from 64K to 64M [default: 1M]", HelpName = "SIZE" };

    public TrackCommandLine()
    {
        Command = new Command(CommandLine.TrackVerb,
            "Track guest writes of a running VM from this process: print one line per event (write, remove-region, gap) until the VM ends");
        foreach (var option in new Option[] { _socket, _range, _sync, _deadline, _ring }) Command.Options.Add(option);
    }

    public Command Command { get; }

    public TrackArguments Read(ParseResult result) =>
        new(result.GetValue(_socket), result.GetValue(_range), result.GetValue(_sync), result.GetValue(_deadline), result.GetValue(_ring));
}
