using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmSharp.Api;

// The JSON bodies of the control API (docs/api/kvmsharp.yaml), named and shaped as Firecracker's where the two
// overlap, so its users and tools carry over. Snake-case names come from ApiJsonContext's naming policy.

/// <summary>GET /: what this VMM is and where its VM is.</summary>
public sealed record InstanceInfo(string Id, string VmmVersion, string State, string AppName = "kvmsharp");

/// <summary>GET/PUT /machine-config.</summary>
public sealed record MachineConfig(int? VcpuCount, long? MemSizeMib);

/// <summary>PUT /boot-source: a Linux kernel (bzImage or PVH vmlinux), its initrd and command line.</summary>
public sealed record BootSource(string? KernelImagePath, string? InitrdPath = null, string? BootArgs = null);

/// <summary>PUT /drives/{id}: a raw image as a virtio-blk disk (vda, vdb, ... in the order drives were first put; the root device first).</summary>
public sealed record Drive(string? DriveId, string? PathOnHost, bool? IsReadOnly = null, bool? IsRootDevice = null, string? Serial = null);

/// <summary>PATCH /drives/{id}: a new backing file for a running VM's drive.</summary>
public sealed record PartialDrive(string? DriveId, string? PathOnHost);

/// <summary>PUT /actions.</summary>
public sealed record InstanceActionInfo(string? ActionType);

/// <summary>PATCH /vm.</summary>
public sealed record VmStateRequest(string? State);

/// <summary>Every refusal: 400 bad request, 404 no such thing, 409 not in this state, 500 the VMM failed.</summary>
public sealed record Fault(string FaultMessage);

/// <summary>GET /vm/config, and the --config-file: the API's bodies in one document.</summary>
public sealed record VmConfigDocument
{
    [JsonPropertyName("boot-source")]
    public BootSource? BootSource { get; init; }

    [JsonPropertyName("machine-config")]
    public MachineConfig? MachineConfig { get; init; }

    [JsonPropertyName("drives")]
    public IReadOnlyList<Drive>? Drives { get; init; }

    /// <summary>Accepted by the parser so that a Firecracker config is refused with a reason, not as an unknown field.</summary>
    [JsonPropertyName("network-interfaces")]
    public JsonElement? NetworkInterfaces { get; init; }

    [JsonPropertyName("vsock")]
    public JsonElement? Vsock { get; init; }
}

/// <summary>One line of GET /events.</summary>
public sealed record EventLine(long Seq, DateTimeOffset Time, string Vm, string Event, string? Detail);
