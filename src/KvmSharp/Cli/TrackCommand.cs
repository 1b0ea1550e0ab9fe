using KvmSharp.Vmm.Trackers;
using KvmSharp.Vmm.Trackers.Remote;

namespace KvmSharp.Cli;

/// <summary>
/// `kvmsharp track --tracker-sock S --range A-B [--sync]`: connects to a VM's tracker socket, tracks the
/// ranges and prints every event, one line each (stdout), until the VM ends. Exit 0 when the VM ended
/// (or closed the socket), 2 for bad flags, 3 when the VMM detached it (a missed deadline), 70 otherwise.
/// </summary>
public static class TrackCommand
{
    public const int Detached = 3;

    public static int Run(TrackArguments arguments, TextWriter output, TextWriter error)
    {
        if (string.IsNullOrEmpty(arguments.Socket)) return Bad(error, "--tracker-sock is required: give the socket of `kvmsharp run --tracker-sock PATH`");
        if (string.IsNullOrWhiteSpace(arguments.Range)) return Bad(error, "--range is required: give GPA, GPA-GPA or GPA+SIZE, comma-separated");
        IReadOnlyList<GuestRange> ranges;
        try
        {
            ranges = GuestRange.ParseList(arguments.Range);
        }
        catch (FormatException e)
        {
            return Bad(error, $"--range {arguments.Range}: {e.Message}");
        }
        uint deadline = 0, ring = 0;
        if (arguments.Deadline is { } d && (!uint.TryParse(d, out deadline) || deadline == 0 || deadline > TrackerWire.MaxDeadlineMilliseconds))
            return Bad(error, $"--deadline {d}: give milliseconds from 1 to {TrackerWire.MaxDeadlineMilliseconds}");
        if (arguments.Deadline is not null && !arguments.Synchronous) return Bad(error, "--deadline only applies with --sync");
        if (arguments.Ring is { } r && (!SizeParser.TryParse(r, out ulong ringBytes) || ringBytes < TrackerWire.MinRingBytes || ringBytes > TrackerWire.MaxRingBytes || (ringBytes & (ringBytes - 1)) != 0 || (ring = (uint)ringBytes) == 0))
            return Bad(error, $"--ring {r}: give a power of two from 64K to 64M");

        RemoteTrackerClient client;
        try
        {
            client = RemoteTrackerClient.Connect(arguments.Socket);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            error.WriteLine($"kvmsharp track: cannot attach to {arguments.Socket}: {e.Message}");
            return Program.HostFailure;
        }
        using (client)
        {
            try
            {
                var (subscribeErrno, subscribed) = client.Subscribe(arguments.Synchronous, deadline, ring);
                if (subscribeErrno != 0) return Refused(error, "subscribe", subscribeErrno, subscribed);
                var pages = ranges.Select(range => (range.FirstGfn, range.EndGfn - range.FirstGfn)).ToList();
                var (addErrno, added) = client.AddGfns(pages, TrackerWire.TrapWrites);
                if (addErrno != 0) return Refused(error, "track", addErrno, added);
                error.WriteLine($"kvmsharp track: tracking {string.Join(", ", ranges)} ({subscribed}): {added}");
                error.Flush();
                using var stop = new CancellationTokenSource();
                Console.CancelKeyPress += (_, e) =>
                {
                    e.Cancel = true;
                    stop.Cancel();
                };
                string reason = client.Run(e =>
                {
                    output.WriteLine(e.Format());
                    output.Flush();
                }, stop.Token);
                error.WriteLine($"kvmsharp track: detached: {reason}");
                return reason.Contains("deadline", StringComparison.Ordinal) ? Detached : 0;
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                error.WriteLine($"kvmsharp track: {e.Message}");
                return Program.HostFailure;
            }
        }
    }

    private static int Bad(TextWriter error, string message)
    {
        error.WriteLine($"kvmsharp track: {message}");
        return Program.InvalidSettings;
    }

    private static int Refused(TextWriter error, string what, int errno, string detail)
    {
        error.WriteLine($"kvmsharp track: the VMM refused to {what}: {Kvm.Interop.Errno.Name(errno)}: {detail}");
        return Program.HostFailure;
    }
}
