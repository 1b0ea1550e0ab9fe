namespace KvmSharp.Api;

/// <summary>One route of the API: its method, path template, and every status it can answer (docs/api/kvmsharp.yaml lists the same).</summary>
public sealed record ApiRoute(string Method, string Path, IReadOnlyList<int> Statuses)
{
    /// <summary>Every route the server maps, in the document's order. The OpenAPI test compares the two.</summary>
    public static readonly IReadOnlyList<ApiRoute> All =
    [
        new("GET", "/", [200]),
        new("GET", "/vm/config", [200, 400]),
        new("GET", "/machine-config", [200, 400]),
        new("PUT", "/machine-config", [204, 400]),
        new("PUT", "/boot-source", [204, 400]),
        new("PUT", "/drives/{drive_id}", [204, 400]),
        new("PATCH", "/drives/{drive_id}", [204, 400, 404, 409]),
        new("PUT", "/network-interfaces/{iface_id}", [400]),
        new("PUT", "/vsock", [400]),
        new("PUT", "/actions", [204, 400, 409, 500]),
        new("PATCH", "/vm", [204, 400, 409, 500]),
        new("GET", "/metrics", [200]),
        new("GET", "/events", [200]),
    ];
}
