using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;

namespace KvmSharp.Cli;

/// <summary>
/// `kvmsharp [run] [options]`, `kvmsharp caps [--kvm-device PATH]`, `kvmsharp help [COMMAND]`, on
/// System.CommandLine: generated help, --version, and completions through the [suggest] directive.
/// Flags become configuration keys under <see cref="RunOptions.Section"/>, so they override settings
/// files and environment variables. Every value is taken as a string (the last repeat wins) and
/// checked later by <see cref="RunOptions.Validate(ulong?)"/>.
/// </summary>
public sealed class CommandLine
{
    public const string RunVerb = "run", CapsVerb = "caps", HelpVerb = "help", CtlVerb = "ctl", TrackVerb = "track";

    /// <summary>`kvmsharp exec [options] -- CMD`: parsed by <see cref="Exec.ExecArguments"/>, before System.CommandLine sees it.</summary>
    public const string ExecVerb = "exec";

    private readonly Dictionary<RunSetting, Option<string>> _runOptions = new();
    private readonly Option<string> _capsKvmDevice;
    private readonly Argument<string?> _helpTopic;
    private readonly TrackCommandLine _track = new();
    private readonly Option<string> _ctlSocket;
    private readonly Argument<string> _ctlAction;

    public CommandLine()
    {
        Root = new RootCommand("KvmSharp: a KVM virtual machine monitor. Boots the built-in guest, a flat binary (--image) or Linux (--kernel).\n" +
                               "With no command, `run` is meant: `kvmsharp --memory 128M` is `kvmsharp run --memory 128M`.");
        var run = new Command(RunVerb, "Boot a guest (the built-in one when no --image or --kernel is given) and exit with its status");
        foreach (var setting in RunSetting.All)
        {
            var option = CreateOption(setting);
            _runOptions[setting] = option;
            // The same options on the root command make the verb optional.
            Root.Options.Add(option);
            run.Options.Add(option);
        }
        var caps = new Command(CapsVerb, "Print this host's KVM facts: API version, vendor module, SMM, memslots, capabilities");
        _capsKvmDevice = CreateOption(RunSetting.KvmDevice);
        caps.Options.Add(_capsKvmDevice);
        var help = new Command(HelpVerb, "Show this help, or a command's (kvmsharp help run)");
        _helpTopic = new Argument<string?>("COMMAND") { Arity = ArgumentArity.ZeroOrOne, Description = "run or caps" };
        _helpTopic.CompletionSources.Add(RunVerb, CapsVerb, TrackVerb);
        help.Arguments.Add(_helpTopic);
        Root.Subcommands.Add(run);
        Root.Subcommands.Add(caps);
        Root.Subcommands.Add(help);
        // kvmsharp ctl: the control API's client (src/KvmSharp/Api/CtlCommand.cs).
        var ctl = new Command(CtlVerb, "Control a running kvmsharp through its API socket (exit 0 done, 2 bad usage, 70 refused or unreachable)");
        _ctlSocket = new Option<string>("--api-sock") { Description = "The API socket of the kvmsharp to control", HelpName = "PATH", Required = true };
        _ctlAction = new Argument<string>("ACTION") { Description = Api.CtlCommand.ActionsHelp };
        _ctlAction.CompletionSources.Add(Api.CtlCommand.Actions);
        ctl.Options.Add(_ctlSocket);
        ctl.Arguments.Add(_ctlAction);
        Root.Subcommands.Add(ctl);
        Root.Subcommands.Add(_track.Command);
        // Program runs the verbs; an action on each command only tells System.CommandLine they are runnable.
        foreach (var command in new Command[] { Root, run, caps, help, ctl, _track.Command }) command.SetAction(_ => 0);

        foreach (var helpOption in new Command[] { Root, run, caps, help, ctl, _track.Command }.SelectMany(c => c.Options).OfType<HelpOption>())
            if (helpOption.Action is HelpAction standard) helpOption.Action = new HelpWithNotes(standard);
    }

    public RootCommand Root { get; }

    private static Option<string> CreateOption(RunSetting setting)
    {
        var option = new Option<string>(setting.Flag)
        {
            Description = setting.Description,
            HelpName = setting.ValueName,
            // A switch alone means true; a value flag repeated keeps its last value, as in most CLIs.
            Arity = setting.IsSwitch ? ArgumentArity.ZeroOrOne : ArgumentArity.OneOrMore,
            CustomParser = result => result.Tokens.Count == 0 ? "true" : result.Tokens[^1].Value,
        };
        // System.CommandLine gives a value flag the next token even when it is another flag: `--memory --cpus 2`.
        option.Validators.Add(result =>
        {
            if (result.Tokens.FirstOrDefault(token => IsFlag(token.Value)) is { } flag)
                result.AddError($"{setting.Flag} needs a value, not the flag '{flag.Value}' (a value starting with -- is given as {setting.Flag}=VALUE)");
        });
        if (setting.IsSwitch) option.CompletionSources.Add("true", "false");
        else if (setting.Values is { } values) option.CompletionSources.Add(values);
        return option;
    }

    // An option's own complaint explains more than the stray tokens it leaves behind.
    private static string FirstError(ParseResult result) =>
        result.Errors.OrderBy(error => error.SymbolResult is System.CommandLine.Parsing.OptionResult ? 0 : 1).First().Message;

    private static bool IsFlag(string token) =>
        token is "-h" or "-?" or "--help" or "--version" || RunSetting.All.Any(setting => setting.Flag == token);

    /// <summary>Parse; the result says which verb ran (or that System.CommandLine's own help, version or completion action applies) and carries the flags as settings.</summary>
    public ParsedCommandLine Parse(IReadOnlyList<string> args)
    {
        var result = Root.Parse(args);
        if (result.Action is ParseErrorAction)
            return new ParsedCommandLine(ParsedVerb.Error, new Dictionary<string, string?>(), result) { Error = $"{FirstError(result)} See 'kvmsharp --help'." };
        if (result.Action is not null && result.CommandResult.Command is var command && result.Action != command.Action)
            return new ParsedCommandLine(ParsedVerb.BuiltIn, new Dictionary<string, string?>(), result);

        var settings = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        string verb = result.CommandResult.Command == Root ? RunVerb : result.CommandResult.Command.Name;
        if (verb == CapsVerb)
        {
            if (result.GetResult(_capsKvmDevice) is not null) settings[RunSetting.KvmDevice.ConfigurationKey] = result.GetValue(_capsKvmDevice);
        }
        else if (verb == RunVerb)
        {
            foreach (var (setting, option) in _runOptions)
            {
                if (result.GetResult(option) is not { } given) continue;
                if (!setting.IsRepeatable)
                {
                    settings[setting.ConfigurationKey] = result.GetValue(option);
                    continue;
                }
                // Every repeat, in order, as a list (KvmSharp:Drive:0, :1, ...), as a settings file's array would be.
                for (int i = 0; i < given.Tokens.Count; i++) settings[$"{setting.ConfigurationKey}:{i}"] = given.Tokens[i].Value;
            }
        }
        var parsedVerb = verb switch { CapsVerb => ParsedVerb.Caps, HelpVerb => ParsedVerb.Help, CtlVerb => ParsedVerb.Ctl, TrackVerb => ParsedVerb.Track, _ => ParsedVerb.Run };
        return new ParsedCommandLine(parsedVerb, settings, result)
        {
            HelpTopic = verb == HelpVerb ? result.GetValue(_helpTopic) : null,
            CtlSocket = verb == CtlVerb ? result.GetValue(_ctlSocket) : null,
            CtlAction = verb == CtlVerb ? result.GetValue(_ctlAction) : null,
            Track = verb == TrackVerb ? _track.Read(result) : null,
        };
    }

    /// <summary>Print the help of the root command, or of <paramref name="topic"/>; false when there is no such command.</summary>
    public bool WriteHelp(string? topic, TextWriter output)
    {
        if (topic is not null && topic is not (RunVerb or CapsVerb or HelpVerb or CtlVerb or TrackVerb)) return false;
        var result = Root.Parse(topic is null ? ["--help"] : [topic, "--help"]);
        return result.Invoke(new InvocationConfiguration { Output = output, EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null }) == 0;
    }

    /// <summary>What help adds below the generated option list: where settings come from, and the exit statuses.</summary>
    public const string Notes = """
        Settings: every run option is also KvmSharp:NAME in appsettings.json or KVMSHARP__NAME in the
        environment (KVMSHARP__MEMORY=256M). Lowest precedence first: the appsettings.json beside the
        executable, /etc/kvmsharp/appsettings.json, ./appsettings.json, the environment, the flags.

        Exit status: the guest's (the byte it writes to debug-exit port 0x501; with --debug-exit
        qemu=on, (value << 1) | 1 as QEMU's isa-debug-exit); 2 an invalid setting,
        found before the VM is created; 70 a KvmSharp or host failure; 71 a guest fault (triple fault,
        KVM entry failure); with --expect: 0 when the text appears, 124 on timeout, 1 (or the fault's
        status) when the guest ends first.

        Completions: kvmsharp [suggest] --me lists --memory and --memfd (dotnet-suggest uses this).
        """;

    // The generated help, then the notes.
    private sealed class HelpWithNotes(HelpAction standard) : SynchronousCommandLineAction
    {
        public override int Invoke(ParseResult parseResult)
        {
            int status = standard.Invoke(parseResult);
            var output = parseResult.InvocationConfiguration.Output;
            output.WriteLine(Notes);
            return status;
        }
    }
}

public enum ParsedVerb { Run, Caps, Help, BuiltIn, Error, Ctl, Track }

/// <summary>The verb, the flags as configuration settings, and System.CommandLine's parse result.</summary>
public sealed record ParsedCommandLine(ParsedVerb Verb, IReadOnlyDictionary<string, string?> Settings, ParseResult Result)
{
    /// <summary>The parse error, one line, when <see cref="Verb"/> is <see cref="ParsedVerb.Error"/>.</summary>
    public string? Error { get; init; }

    /// <summary>The command `kvmsharp help COMMAND` asked about.</summary>
    public string? HelpTopic { get; init; }

    /// <summary>`kvmsharp track`'s flags as given.</summary>
    public TrackArguments? Track { get; init; }

    /// <summary>kvmsharp ctl: the API socket and the action.</summary>
    public string? CtlSocket { get; init; }
    public string? CtlAction { get; init; }
}
