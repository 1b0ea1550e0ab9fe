using CsCheck;
using KvmSharp.Vmm.Lifecycle;
using KvmSharp.Vmm.Machine;
using Xunit;

namespace KvmSharp.Tests.Unit.Lifecycle;

/// <summary>Random request sequences against the controller and against a model of its transition table.</summary>
public sealed class VmControllerModelTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private static readonly VmExitKind[] Kinds = Enum.GetValues<VmExitKind>();

    private enum Op { Start, Pause, Release, CtrlAltDel, Stop, End }

    [Fact]
    public void Random_request_sequences_move_the_controller_as_the_model_says_and_every_lease_ends_released()
    {
        Gen.Select(Gen.Int[0, 5], Gen.Int[0, Kinds.Length - 1]).Array[1, 25]
            .Sample(ops => Run(ops.Select(o => ((Op)o.Item1, Kinds[o.Item2])).ToArray()), iter: 150, threads: 1);
    }

    private static void Run((Op Op, VmExitKind Kind)[] ops)
    {
        var machine = new FakeMachine();
        using var controller = VmControllerTransitionTests.Controller(machine);
        using var events = new EventLog(controller);
        var model = VmState.Created;
        var expectedEvents = new List<string>();
        var leases = new Queue<IPauseLease>();
        int step = 0;
        foreach (var (op, kind) in ops)
        {
            string where = $"step {step++} ({op}) in {model}, sequence [{string.Join(", ", ops.Select(o => o.Op))}]";
            bool final = model is VmState.Stopped or VmState.Failed;
            bool allowed;
            switch (op)
            {
                case Op.Start:
                    allowed = model == VmState.Created;
                    if (Apply(controller.StartAsync(), allowed, where)) { model = VmState.Running; expectedEvents.Add(VmEventKind.Started); }
                    break;
                case Op.Pause:
                    allowed = model is VmState.Running or VmState.Paused;
                    var pausing = controller.PauseAsync("holder");
                    if (Apply(pausing, allowed, where))
                    {
                        leases.Enqueue(pausing.Result);
                        if (model == VmState.Running) { model = VmState.Paused; expectedEvents.Add(VmEventKind.Paused); }
                    }
                    break;
                case Op.Release:
                    if (leases.Count == 0) continue;
                    leases.Dequeue().Dispose();
                    if (leases.Count == 0 && model == VmState.Paused) { model = VmState.Running; expectedEvents.Add(VmEventKind.Resumed); }
                    break;
                case Op.CtrlAltDel:
                    Apply(controller.SendCtrlAltDelAsync(), model == VmState.Running, where);
                    break;
                case Op.Stop:
                    Apply(controller.StopAsync("model"), allowed: true, where);
                    if (!final) { model = VmState.Stopped; expectedEvents.Add(VmEventKind.Shutdown); }
                    break;
                case Op.End:
                    machine.End(new VmOutcome(kind, 0, kind.ToString()));
                    if (final) break;
                    Assert.True(controller.Completion.Wait(Wait), where);
                    bool failed = kind is VmExitKind.Fault or VmExitKind.Error or VmExitKind.Timeout;
                    model = failed ? VmState.Failed : VmState.Stopped;
                    expectedEvents.Add(kind == VmExitKind.Reboot ? VmEventKind.Reboot : failed ? VmEventKind.Fault : VmEventKind.Shutdown);
                    break;
            }
            Assert.True(model == controller.State, $"{where}: controller is {controller.State}, model {model}");
        }
        while (leases.Count > 0) leases.Dequeue().Dispose();
        if (model == VmState.Paused) expectedEvents.Add(VmEventKind.Resumed); // the last lease released above
        Assert.All(machine.Vcpus, v => Assert.Equal(0, v.Depth));
        Assert.Equal(expectedEvents, events.WaitFor(expectedEvents.Count).Select(e => e.Kind));
        Thread.Sleep(5);
        Assert.Equal(expectedEvents.Count, events.Events.Count); // and nothing more
    }

    // Waits for the request; true when it was applied, false when refused (as it must be when not allowed).
    private static bool Apply(Task request, bool allowed, string where)
    {
        try
        {
            Assert.True(request.Wait(Wait), $"{where}: no answer");
        }
        catch (AggregateException e) when (e.InnerException is VmTransitionException)
        {
            Assert.False(allowed, $"{where}: refused: {e.InnerException.Message}");
            return false;
        }
        Assert.True(allowed, $"{where}: applied though the model refuses it");
        return true;
    }
}
