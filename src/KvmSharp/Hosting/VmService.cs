using KvmSharp.Cli;
using KvmSharp.Devices.Serial;
using KvmSharp.Vmm.Guests;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Trackers;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace KvmSharp.Hosting;

/// <summary>
/// Runs one VM for the life of the host. The VM ending stops the host with the guest's status;
/// the host stopping (Ctrl-C, SIGTERM, systemd) stops the VM cleanly.
/// </summary>
public sealed class VmService(
    ValidatedRunOptions options,
    ExitCodeHolder exitCode,
    IHostApplicationLifetime lifetime,
    ILogger<VmService> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await Task.Yield();
        StreamSerialSink? sink = null;
        VirtualMachine? vm = null;
        try
        {
            Stream output = options.Serial == "stdout"
                ? Console.OpenStandardOutput()
                : new FileStream(options.Serial, FileMode.Create, FileAccess.Write, FileShare.Read);
            sink = new StreamSerialSink(output, leaveOpen: options.Serial == "stdout", maxFlushDelay: TimeSpan.FromMilliseconds(20));
            var image = options.Image is null
                ? BuiltInGuest.Create()
                : GuestImage.FromFile(options.Image, options.Entry!.Value, options.Mode);
            if (options.Image is null && options.MemoryBytes < BuiltInGuest.MinimumMemory)
                throw new OptionsException("memory", $"{options.MemoryBytes >> 20}M", $"the built-in guest needs at least {BuiltInGuest.MinimumMemory >> 20}M");

            vm = VirtualMachine.Create(new VmConfig
            {
                MemoryBytes = options.MemoryBytes,
                Cpus = options.Cpus,
                Image = image,
                SerialSink = sink,
                KvmPath = options.KvmDevice,
                MemfdBacking = options.Memfd,
                Log = message => logger.LogWarning("{Message}", message),
            });
            WriteAuditTracker? audit = null;
            if (options.Track.Count > 0)
            {
                audit = new WriteAuditTracker(options.Track, message => logger.LogInformation("{Message}", message));
                audit.Attach(vm.PageTracker);
                logger.LogInformation("auditing guest writes to {Ranges}", string.Join(", ", options.Track));
            }
            logger.LogInformation("booting {Image} with {Memory} MiB and {Cpus} vCPU(s)", image.Name, options.MemoryBytes >> 20, options.Cpus);
            vm.Start();
            using var input = SerialInputPump.StartIfInteractive(vm.Serial, stoppingToken);
            using (stoppingToken.Register(() => vm.Stop("the host is shutting down")))
            {
                var outcome = await Task.Run(() => vm.WaitForExit(), CancellationToken.None);
                sink.Flush();
                if (audit is not null) logger.LogInformation("{Summary}", audit.Summary());
                Report(outcome, vm);
                exitCode.ExitCode = outcome.ExitCode;
            }
        }
        catch (OptionsException e)
        {
            logger.LogError("{Message}", e.Message);
            exitCode.ExitCode = 2;
        }
        catch (Exception e) when (e is Kvm.KvmException or ArgumentException or IOException)
        {
            logger.LogError("{Message}", e.Message);
            exitCode.ExitCode = VmOutcome.ErrorCode;
        }
        finally
        {
            vm?.Dispose();
            sink?.Dispose();
            lifetime.StopApplication();
        }
    }

    private void Report(VmOutcome outcome, VirtualMachine vm)
    {
        long strayReads = vm.PortBus.UnhandledReads + vm.MmioBus.UnhandledReads;
        long strayWrites = vm.PortBus.UnhandledWrites + vm.MmioBus.UnhandledWrites;
        if (strayReads + strayWrites > 0)
            logger.LogInformation("unclaimed guest accesses: {Reads} reads (answered 0xff), {Writes} writes (dropped); last at 0x{Address:x}",
                strayReads, strayWrites, Math.Max(vm.PortBus.LastUnhandledAddress, vm.MmioBus.LastUnhandledAddress));
        switch (outcome.Kind)
        {
            case VmExitKind.Fault or VmExitKind.Error:
                logger.LogError("VM ended: {Summary}\n{Report}", outcome.Summary, outcome.Report);
                break;
            default:
                logger.LogInformation("VM ended: {Summary} (exit code {Code})", outcome.Summary, outcome.ExitCode);
                break;
        }
    }
}
