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
internal sealed partial class ApiJsonContext : JsonSerializerContext
{
    /// <summary>
    /// The context the API uses: messages keep their quotes and '+' readable (no \u0027), still valid JSON. Made on
    /// first use: the generated Default is initialized in another part of this class, in no set order.
    /// </summary>
    public static ApiJsonContext Relaxed => s_relaxed ??= new(new JsonSerializerOptions(Default.Options) { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static ApiJsonContext? s_relaxed;
}
