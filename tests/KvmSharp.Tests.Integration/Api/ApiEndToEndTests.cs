using KvmSharp.Api;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Api;

/// <summary>
/// The real `kvmsharp run --api-sock` with a real VM (a Linux-shaped guest that halts in KVM), driven by real
/// `curl --unix-socket` and `kvmsharp ctl` through every endpoint; refusals say why with the documented status.
/// </summary>
[Collection("api")]
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ApiEndToEndTests : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("kvmsharp-api-").FullName;
    private readonly List<(string Route, int Status)> _seen = [];

    public void Dispose()
    {
        try
        {
            Directory.Delete(_directory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string SocketPath => Path.Combine(_directory, "api.sock");

    // One request, remembered with its route so every answer can be checked against the documented statuses.
    private Curl.Response Call(string method, string route, string? body = null, string? path = null)
    {
        var response = Curl.Send(SocketPath, method, path ?? route, body);
        _seen.Add(($"{method} {route}", response.Status));
        return response;
    }

    private void AssertFault(Curl.Response response, int status, string because)
    {
        Assert.True(response.Status == status, $"expected {status}: {response}");
        Assert.StartsWith("{\"fault_message\":", response.Body, StringComparison.Ordinal);
        Assert.Contains(because, response.Body, StringComparison.Ordinal);
    }

    private void AssertEverySeenStatusIsDocumented()
    {
        var documented = ApiRoute.All.ToDictionary(r => $"{r.Method} {r.Path}", r => r.Statuses);
        foreach (var (route, status) in _seen)
        {
            Assert.True(documented.ContainsKey(route), $"{route} is not a documented route");
            Assert.True(documented[route].Contains(status), $"{route} answered {status}, which docs/api/kvmsharp.yaml does not list");
        }
    }

    [ApiFact]
    public void Curl_and_ctl_drive_a_running_vm_through_every_endpoint()
    {
        string kernel = HaltingKernel.Write(_directory);
        using var vm = new ApiProcess(SocketPath, "run", "--kernel", kernel, "--memory", "64M", "--api-sock", SocketPath);
        vm.WaitUntilServing();
        var (stream, events) = Curl.Stream(SocketPath, "/events");
        try
        {
            // The socket is the VMM's alone.
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(SocketPath));

            var info = Call("GET", "/");
            Assert.Equal(200, info.Status);
            Assert.Contains("\"state\":\"Running\"", info.Body, StringComparison.Ordinal);
            Assert.Contains("\"vmm_version\":", info.Body, StringComparison.Ordinal);
            Assert.Equal("Running", ApiProcess.Ctl(SocketPath, "state").StandardOutput.Trim());

            // Pause and resume, by ctl and by curl; the API's lease is one.
            var paused = ApiProcess.Ctl(SocketPath, "pause");
            Assert.True(paused.ExitCode == 0, paused.StandardError);
            Assert.Contains("\"state\":\"Paused\"", Call("GET", "/").Body, StringComparison.Ordinal);
            Assert.Equal("Paused", ApiProcess.Ctl(SocketPath, "state").StandardOutput.Trim());
            AssertFault(Call("PATCH", "/vm", """{"state":"Paused"}"""), 409, "already paused by the API");
            Assert.Equal(204, Call("PATCH", "/vm", """{"state":"Resumed"}""").Status);
            Assert.Contains("\"state\":\"Running\"", Call("GET", "/").Body, StringComparison.Ordinal);
            AssertFault(Call("PATCH", "/vm", """{"state":"Resumed"}"""), 409, "nothing to resume");
            var resumeRunning = ApiProcess.Ctl(SocketPath, "resume");
            Assert.Equal(70, resumeRunning.ExitCode);
            Assert.Contains("the API refused (409)", resumeRunning.StandardError, StringComparison.Ordinal);
            Assert.Equal(204, Call("PATCH", "/vm", """{"state":"Paused"}""").Status);
            Assert.Equal(0, ApiProcess.Ctl(SocketPath, "resume").ExitCode);
            AssertFault(Call("PATCH", "/vm", """{"state":"Frozen"}"""), 400, "give Paused or Resumed");
            AssertFault(Call("PATCH", "/vm", """{"state":"""), 400, "invalid JSON body");
            AssertFault(Call("PATCH", "/vm", """{"state":"Paused","extra":1}"""), 400, "extra");

            // Configuration: readable; the command line built this VM, so no pre-boot PUT applies.
            var config = Call("GET", "/vm/config");
            Assert.Equal(200, config.Status);
            Assert.Contains($"\"kernel_image_path\":\"{kernel}\"", config.Body, StringComparison.Ordinal);
            Assert.Contains("\"mem_size_mib\":64", config.Body, StringComparison.Ordinal);
            var machine = Call("GET", "/machine-config");
            Assert.Equal("""{"vcpu_count":1,"mem_size_mib":64}""", machine.Body);
            AssertFault(Call("PUT", "/machine-config", """{"vcpu_count":2,"mem_size_mib":64}"""), 400, "needs --wait-for-start");
            AssertFault(Call("PUT", "/boot-source", $$"""{"kernel_image_path":"{{kernel}}"}"""), 400, "needs --wait-for-start");
            AssertFault(Call("PUT", "/drives/{drive_id}", """{"drive_id":"root","path_on_host":"/x.img"}""", "/drives/root"), 400, "needs --wait-for-start");
            AssertFault(Call("PATCH", "/drives/{drive_id}", """{"path_on_host":"/x.img"}""", "/drives/root"), 404, "there is no drive 'root'");
            AssertFault(Call("PUT", "/network-interfaces/{iface_id}", """{"iface_id":"eth0"}""", "/network-interfaces/eth0"), 400, "not supported yet");
            AssertFault(Call("PUT", "/vsock", """{"guest_cid":3}"""), 400, "not supported yet");

            // Actions.
            AssertFault(Call("PUT", "/actions", """{"action_type":"Reboot"}"""), 400, "give InstanceStart, SendCtrlAltDel or Stop");
            AssertFault(Call("PUT", "/actions", """{"action_type":"InstanceStart"}"""), 409, "started by the command line");
            Assert.Equal(204, Call("PUT", "/actions", """{"action_type":"SendCtrlAltDel"}""").Status);
            Assert.Equal(0, ApiProcess.Ctl(SocketPath, "ctrl-alt-del").ExitCode);

            // Metrics, by curl and ctl.
            var metrics = Call("GET", "/metrics");
            Assert.Equal(200, metrics.Status);
            Assert.Contains("kvmsharp_vm_state{state=\"Running\"} 1", metrics.Body, StringComparison.Ordinal);
            Assert.Contains("# TYPE kvmsharp_vm_run_time_seconds_total counter", metrics.Body, StringComparison.Ordinal);
            Assert.Contains("kvmsharp_vm_state{state=\"Paused\"} 0", ApiProcess.Ctl(SocketPath, "metrics").StandardOutput, StringComparison.Ordinal);

            var unknown = Curl.Send(SocketPath, "GET", "/snapshot/create");
            AssertFault(unknown, 404, "no route GET /snapshot/create");

            // Stop: the VM ends, the process exits 0, the socket goes.
            var stop = ApiProcess.Ctl(SocketPath, "stop");
            Assert.True(stop.ExitCode == 0, stop.StandardError);
            Assert.Equal(0, vm.WaitForExit());
            Assert.Contains("stopped through the API", vm.StandardError, StringComparison.Ordinal);
            Assert.False(File.Exists(SocketPath), "the socket file was left behind");

            Assert.True(stream.WaitForExit(TimeSpan.FromSeconds(10)), "the events stream did not end with the VMM");
            stream.WaitForExit();
            string lines = events();
            Assert.Contains("\"event\":\"paused\"", lines, StringComparison.Ordinal);
            Assert.Contains("\"event\":\"resumed\"", lines, StringComparison.Ordinal);
            int firstPause = lines.IndexOf("\"event\":\"paused\"", StringComparison.Ordinal);
            Assert.True(firstPause < lines.IndexOf("\"event\":\"resumed\"", StringComparison.Ordinal), lines);
            AssertEverySeenStatusIsDocumented();
        }
        finally
        {
            if (!stream.HasExited) stream.Kill();
            stream.Dispose();
        }
    }

    [ApiFact(AsAnotherUid = true)]
    public void Another_uid_is_refused_by_its_credentials_even_when_the_socket_mode_lets_it_in()
    {
        string kernel = HaltingKernel.Write(_directory);
        using var vm = new ApiProcess(SocketPath, "run", "--kernel", kernel, "--memory", "64M", "--api-sock", SocketPath);
        vm.WaitUntilServing();
        // The directory and the socket opened up on purpose: the mode no longer protects it, SO_PEERCRED must.
        File.SetUnixFileMode(_directory, (UnixFileMode)0x1FF);
        File.SetUnixFileMode(SocketPath, (UnixFileMode)0x1B6);

        var refused = Curl.Send(SocketPath, "GET", "/", asUser: "65534");

        Assert.True(refused.Status == 403, refused.ToString());
        Assert.Contains("uid 65534 may not use this VM's API", refused.Body, StringComparison.Ordinal);
        Assert.Equal(200, Curl.Send(SocketPath, "GET", "/").Status); // root still may
        Assert.Equal(0, ApiProcess.Ctl(SocketPath, "stop").ExitCode);
        Assert.Equal(0, vm.WaitForExit());
    }

    [ApiFact]
    public void Wait_for_start_boots_what_the_api_configured()
    {
        string kernel = HaltingKernel.Write(_directory);
        string disk = Path.Combine(_directory, "root.img");
        using (var image = File.Create(disk)) image.SetLength(1 << 20);
        using var vm = new ApiProcess(SocketPath, "run", "--api-sock", SocketPath, "--wait-for-start");
        vm.WaitUntilServing();

        Assert.Equal("Created", ApiProcess.Ctl(SocketPath, "state").StandardOutput.Trim());
        Assert.Equal(204, Call("PUT", "/machine-config", """{"vcpu_count":2,"mem_size_mib":96}""").Status);
        AssertFault(Call("PUT", "/machine-config", """{"vcpu_count":2}"""), 400, "needs vcpu_count and mem_size_mib");
        AssertFault(Call("PUT", "/boot-source", $$"""{"kernel_image_path":"{{_directory}}/none"}"""), 400, "invalid setting kernel");
        Assert.Equal(204, Call("PUT", "/boot-source", $$"""{"kernel_image_path":"{{kernel}}","boot_args":"console=ttyS0"}""").Status);
        AssertFault(Call("PUT", "/drives/{drive_id}", $$"""{"drive_id":"root","path_on_host":"{{_directory}}/none.img"}""", "/drives/root"), 400, "none.img");
        Assert.Equal(204, Call("PUT", "/drives/{drive_id}", $$"""{"drive_id":"root","path_on_host":"{{disk}}","is_root_device":true}""", "/drives/root").Status);
        var config = Call("GET", "/vm/config");
        Assert.Contains("\"vcpu_count\":2,\"mem_size_mib\":96", config.Body, StringComparison.Ordinal);
        Assert.Contains($"\"path_on_host\":\"{disk}\"", config.Body, StringComparison.Ordinal);
        Assert.Contains("\"state\":\"Created\"", Call("GET", "/").Body, StringComparison.Ordinal);
        AssertFault(Call("PATCH", "/vm", """{"state":"Paused"}"""), 409, "no VM is running");

        Assert.Equal(0, ApiProcess.Ctl(SocketPath, "start").ExitCode);
        vm.WaitForState("Running");
        AssertFault(Call("PUT", "/actions", """{"action_type":"InstanceStart"}"""), 409, "already been started");
        AssertFault(Call("PUT", "/machine-config", """{"vcpu_count":1,"mem_size_mib":64}"""), 400, "before InstanceStart");
        AssertFault(Call("PATCH", "/drives/{drive_id}", $$"""{"path_on_host":"{{disk}}"}""", "/drives/root"), 400, "not supported yet");
        Assert.Contains("\"mem_size_mib\":96", Call("GET", "/machine-config").Body, StringComparison.Ordinal);
        Assert.Equal(0, ApiProcess.Ctl(SocketPath, "stop").ExitCode);
        Assert.Equal(0, vm.WaitForExit());
        Assert.Contains("with 96 MiB and 2 vCPU(s)", vm.StandardError, StringComparison.Ordinal);
        AssertEverySeenStatusIsDocumented();
    }

    [ApiFact]
    public void Stop_before_instance_start_ends_without_booting()
    {
        using var vm = new ApiProcess(SocketPath, "run", "--api-sock", SocketPath, "--wait-for-start");
        vm.WaitUntilServing();
        Assert.Equal(0, ApiProcess.Ctl(SocketPath, "stop").ExitCode);
        Assert.Equal(0, vm.WaitForExit());
        Assert.Contains("no VM was booted", vm.StandardError, StringComparison.Ordinal);
        Assert.DoesNotContain("booting", vm.StandardError, StringComparison.Ordinal);
    }

    [ApiFact]
    public void Config_file_configures_the_vm_served_by_the_api()
    {
        string kernel = HaltingKernel.Write(_directory);
        string file = Path.Combine(_directory, "vm.json");
        File.WriteAllText(file, $$"""{ "machine-config": { "vcpu_count": 1, "mem_size_mib": 72 }, "boot-source": { "kernel_image_path": "{{kernel}}" } }""");
        using var vm = new ApiProcess(SocketPath, "run", "--config-file", file, "--api-sock", SocketPath);
        vm.WaitUntilServing();

        Assert.Contains("\"mem_size_mib\":72", Call("GET", "/machine-config").Body, StringComparison.Ordinal);
        Assert.Contains($"\"kernel_image_path\":\"{kernel}\"", Call("GET", "/vm/config").Body, StringComparison.Ordinal);
        Assert.Equal(0, ApiProcess.Ctl(SocketPath, "stop").ExitCode);
        Assert.Equal(0, vm.WaitForExit());
    }

    [ApiFact]
    public void Config_file_with_no_api_boots_without_a_round_trip_and_flags_win()
    {
        string file = Path.Combine(_directory, "vm.json");
        File.WriteAllText(file, """{ "machine-config": { "vcpu_count": 1, "mem_size_mib": 24 } }""");

        var result = KvmSharpProcess.Run(["run", "--config-file", file, "--no-api", "--api-sock", SocketPath]);
        var flagged = KvmSharpProcess.Run(["run", "--config-file", file, "--no-api", "--memory", "20M"]);

        Assert.True(result.ExitCode == 0, result.StandardError);
        Assert.Contains("24 MiB", result.StandardOutput, StringComparison.Ordinal); // the built-in guest reports its RAM
        Assert.False(File.Exists(SocketPath), "--no-api created the socket");
        Assert.True(flagged.ExitCode == 0, flagged.StandardError);
        Assert.Contains("20 MiB", flagged.StandardOutput, StringComparison.Ordinal);
    }

    [ApiFact]
    public void Refused_settings_and_unreachable_sockets_say_why()
    {
        string network = Path.Combine(_directory, "net.json");
        File.WriteAllText(network, """{ "network-interfaces": [ { "iface_id": "eth0", "host_dev_name": "tap0" } ] }""");
        var config = KvmSharpProcess.Run(["run", "--config-file", network]);
        Assert.Equal(2, config.ExitCode);
        Assert.Contains("--config-file", config.StandardError, StringComparison.Ordinal);
        Assert.Contains("network interfaces are not supported yet", config.StandardError, StringComparison.Ordinal);

        var noDirectory = KvmSharpProcess.Run(["run", "--api-sock", Path.Combine(_directory, "missing", "api.sock")]);
        Assert.Equal(2, noDirectory.ExitCode);
        Assert.Contains("does not exist; create it first", noDirectory.StandardError, StringComparison.Ordinal);

        var waitWithoutApi = KvmSharpProcess.Run(["run", "--wait-for-start"]);
        Assert.Equal(2, waitWithoutApi.ExitCode);
        Assert.Contains("--wait-for-start needs --api-sock PATH", waitWithoutApi.StandardError, StringComparison.Ordinal);

        string notSocket = Path.Combine(_directory, "file.sock");
        File.WriteAllText(notSocket, "");
        var plainFile = KvmSharpProcess.Run(["run", "--api-sock", notSocket]);
        Assert.Equal(2, plainFile.ExitCode);
        Assert.Contains("exists and is not a socket", plainFile.StandardError, StringComparison.Ordinal);

        var unreachable = ApiProcess.Ctl(SocketPath, "state");
        Assert.Equal(70, unreachable.ExitCode);
        Assert.Contains($"cannot reach the API at {SocketPath}", unreachable.StandardError, StringComparison.Ordinal);
        var refused = ApiProcess.Ctl(notSocket, "state");
        Assert.Equal(70, refused.ExitCode);
        Assert.Contains("connection refused", refused.StandardError, StringComparison.Ordinal);
        var badAction = ApiProcess.Ctl(SocketPath, "reboot");
        Assert.Equal(2, badAction.ExitCode);
        Assert.Contains("unknown action 'reboot'", badAction.StandardError, StringComparison.Ordinal);
    }
}
