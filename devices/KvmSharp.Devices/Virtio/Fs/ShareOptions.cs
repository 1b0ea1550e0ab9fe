using System.Text;

namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>
/// A host directory shared with the guest over virtio-fs: the guest mounts it with
/// <c>mount -t virtiofs TAG /mnt</c>. <see cref="ReadOnly"/> makes the back end refuse every write.
/// </summary>
/// <param name="Path">The host directory (absolute after <see cref="TryParse"/>).</param>
/// <param name="Tag">The mount tag: 1 to 36 bytes of UTF-8, no commas, spaces or NULs.</param>
/// <param name="ReadOnly">Refuse writes (the back end opens nothing for writing).</param>
public sealed record ShareOptions(string Path, string Tag, bool ReadOnly = false)
{
    /// <summary>
    /// Parse <c>path=DIR,tag=TAG[,readonly=on|off]</c> and check it: DIR exists and is a directory, the tag
    /// fits virtio-fs's 36 bytes. On failure <paramref name="error"/> says what is wrong and how to fix it.
    /// </summary>
    public static bool TryParse(string text, out ShareOptions? options, out string? error)
    {
        options = null;
        string? path = null, tag = null;
        bool readOnly = false;
        foreach (string part in (text ?? "").Split(',', StringSplitOptions.TrimEntries))
        {
            int equals = part.IndexOf('=');
            string key = equals < 0 ? part : part[..equals];
            string value = equals < 0 ? "" : part[(equals + 1)..];
            switch (key)
            {
                case "path":
                    path = value;
                    break;
                case "tag":
                    tag = value;
                    break;
                case "readonly":
                    switch (value)
                    {
                        case "on" or "true" or "yes":
                            readOnly = true;
                            break;
                        case "off" or "false" or "no":
                            readOnly = false;
                            break;
                        default:
                            error = $"readonly={value} is invalid; give readonly=on or readonly=off";
                            return false;
                    }

                    break;
                default:
                    error = $"unknown key '{key}'; give path=DIR,tag=TAG[,readonly=on]";
                    return false;
            }
        }

        if (string.IsNullOrEmpty(path))
        {
            error = "no path=; give path=DIR,tag=TAG[,readonly=on]";
            return false;
        }

        if (!TryValidateTag(tag, out error))
        {
            return false;
        }

        string full = System.IO.Path.GetFullPath(path);
        if (!Directory.Exists(full))
        {
            error = File.Exists(full) ? $"path {full} is a file; give a directory" : $"directory {full} does not exist";
            return false;
        }

        options = new ShareOptions(full, tag!, readOnly);
        error = null;
        return true;
    }

    /// <summary>Whether <paramref name="tag"/> can name a virtio-fs share (1-36 bytes of UTF-8, no separators or control characters).</summary>
    public static bool TryValidateTag(string? tag, out string? error)
    {
        if (string.IsNullOrEmpty(tag))
        {
            error = "no tag=; give tag=NAME (the guest mounts it with mount -t virtiofs NAME /mnt)";
            return false;
        }

        int bytes = Encoding.UTF8.GetByteCount(tag);
        if (bytes > virtio_fs_config.TagLength)
        {
            error = $"tag '{tag}' is {bytes} bytes; virtio-fs tags are at most {virtio_fs_config.TagLength}";
            return false;
        }

        if (tag.Any(c => char.IsControl(c) || char.IsWhiteSpace(c) || c == ','))
        {
            error = $"tag '{tag}' holds a space, comma or control character; use letters, digits, '-' or '_'";
            return false;
        }

        error = null;
        return true;
    }

    /// <summary>How the option is written on the command line.</summary>
    public override string ToString() => $"path={Path},tag={Tag}{(ReadOnly ? ",readonly=on" : "")}";
}
