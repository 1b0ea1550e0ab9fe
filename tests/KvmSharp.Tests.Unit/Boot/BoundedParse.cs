using KvmSharp.Vmm.Boot;

namespace KvmSharp.Tests.Unit.Boot;

/// <summary>
/// Runs a parser of untrusted bytes under the rule every such parser keeps: it returns, or it throws
/// <see cref="InvalidDataException"/> (or, for a placement in guest memory, <see cref="GuestInputException"/>),
/// within a bound. Anything else (another exception, a hang) fails.
/// </summary>
internal static class BoundedParse
{
    /// <summary>Generous for a parse of a few KiB; a hang (the bug this catches) never ends.</summary>
    public static readonly TimeSpan PerCase = TimeSpan.FromSeconds(20);

    public static void SucceedsOrRefuses(byte[] input, Action<byte[]> parse) => Run(() => parse(input), Describe(input));

    /// <summary>Null on success, else the refusal; any other outcome fails, naming <paramref name="input"/>.</summary>
    public static Exception? Run(Action parse, string input)
    {
        var run = Task.Run(() =>
        {
            try
            {
                parse();
                return null;
            }
            catch (Exception e)
            {
                return e;
            }
        });
        // A hung parser keeps its thread; the test fails here rather than hanging with it.
        if (!run.Wait(PerCase))
            throw new TimeoutException($"the parser did not return within {PerCase.TotalSeconds} s on {input}");
        return run.Result switch
        {
            null => null,
            InvalidDataException or GuestInputException => run.Result,
            var error => throw new InvalidOperationException($"the parser threw {error.GetType().Name} instead of InvalidDataException on {input}: {error.Message}", error),
        };
    }

    private static string Describe(byte[] input) =>
        $"{input.Length} bytes {Convert.ToHexString(input.AsSpan(0, Math.Min(input.Length, 160)))}{(input.Length > 160 ? "..." : "")}";
}
