using System.Text.Json;
using System.Text.Json.Serialization;

namespace KvmSharp.Api;

/// <summary>
/// Source-generated JSON for every API body (NativeAOT: no reflection). Unknown fields are refused, as Firecracker
/// does, so a misspelt field is a 400 rather than silently ignored.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    ReadCommentHandling = JsonCommentHandling.Skip,
    AllowTrailingCommas = true)]
[JsonSerializable(typeof(InstanceInfo))]
[JsonSerializable(typeof(MachineConfig))]
[JsonSerializable(typeof(BootSource))]
[JsonSerializable(typeof(Drive))]
[JsonSerializable(typeof(PartialDrive))]
[JsonSerializable(typeof(InstanceActionInfo))]
[JsonSerializable(typeof(VmStateRequest))]
[JsonSerializable(typeof(Fault))]
[JsonSerializable(typeof(VmConfigDocument))]
[JsonSerializable(typeof(EventLine))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
