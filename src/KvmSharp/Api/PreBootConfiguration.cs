using KvmSharp.Cli;

namespace KvmSharp.Api;

/// <summary>
/// --wait-for-start: the VM as the API configures it before InstanceStart. Each PUT is checked by `run`'s own
/// validation of the settings it sets, on the command line's settings with every accepted change applied; a refused
/// PUT changes nothing. InstanceStart validates the whole and hands the options to the host (<see cref="Started"/>).
/// </summary>
/// <param name="bind">The command line's and settings files' options, bound afresh (the base every change applies to).</param>
/// <param name="validate">`run`'s validation (the host's RAM; tests pass their own).</param>
public sealed class PreBootConfiguration(Func<RunOptions> bind, Func<RunOptions, ValidatedRunOptions> validate)
{
    private readonly object _gate = new();
    private readonly TaskCompletionSource<ValidatedRunOptions> _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private VmDefinition _definition = VmDefinition.Empty;

    /// <summary>Completes at InstanceStart with what to boot; cancelled when the API stops the VMM before that.</summary>
    public Task<ValidatedRunOptions> Started => _started.Task;

    public bool IsStarted => _started.Task.IsCompleted;

    public VmDefinition Definition
    {
        get
        {
            lock (_gate) return _definition;
        }
    }

    /// <summary>Accept <paramref name="change"/> unless its settings are invalid; the refusal's message otherwise (nothing changed).</summary>
    /// <param name="touched">The settings the request sets: only their errors refuse it (others may just be incomplete yet).</param>
    public string? TryChange(Func<VmDefinition, VmDefinition> change, params RunSetting[] touched)
    {
        lock (_gate)
        {
            if (IsStarted) return "the VM has started; this can only be configured before InstanceStart";
            var candidate = change(_definition);
            var options = bind();
            candidate.ApplyTo(options);
            try
            {
                // Drives may come before the kernel (as in Firecracker): their own check, as a Linux guest's.
                if (options.Kernel is null && touched.Contains(RunSetting.Drive)) VirtioSettings.Validate(options, linux: true);
                else validate(options);
            }
            catch (OptionsException e) when (e.Setting is null || touched.Contains(e.Setting))
            {
                return e.Message;
            }
            catch (OptionsException)
            {
                // Another setting is not right yet (a --drive without a kernel so far): InstanceStart checks the whole.
            }
            _definition = candidate;
            return null;
        }
    }

    /// <summary>The options as configured now, checked whole (GET /vm/config before the start); null with the reason when not valid yet.</summary>
    public ValidatedRunOptions? Current(out string? problem)
    {
        lock (_gate)
        {
            var options = bind();
            _definition.ApplyTo(options);
            try
            {
                problem = null;
                return validate(options);
            }
            catch (OptionsException e)
            {
                problem = e.Message;
                return null;
            }
        }
    }

    /// <summary>InstanceStart: validate the whole and release the host; the refusal's message otherwise.</summary>
    public string? Start(out bool alreadyStarted)
    {
        lock (_gate)
        {
            alreadyStarted = IsStarted;
            if (alreadyStarted) return "the VM has already been started";
            var options = Current(out string? problem);
            if (options is null) return problem;
            _started.TrySetResult(options);
            return null;
        }
    }

    /// <summary>Stop before InstanceStart: the host ends without booting anything.</summary>
    public void Cancel() => _started.TrySetCanceled();
}
