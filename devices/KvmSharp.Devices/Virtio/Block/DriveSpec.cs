using System.Text;

namespace KvmSharp.Devices.Virtio.Block;

/// <summary>
/// One <c>--drive file=PATH[,readonly=on][,cache=none][,serial=ID][,id=NAME]</c>: what to attach as a
/// virtio-blk disk (a comma inside a value is written twice: <c>file=a,,b.img</c>). Parse with <see cref="Parse"/>, then open with <see cref="BlockImage.Open"/>.
/// </summary>
/// <param name="Path">The raw image (a regular file or a block device).</param>
/// <param name="ReadOnly">readonly=on: opened O_RDONLY and offered with VIRTIO_BLK_F_RO.</param>
/// <param name="DirectIo">cache=none: opened O_DIRECT (the host page cache is bypassed).</param>
/// <param name="Serial">serial=ID: what GET_ID returns (at most 20 bytes of printable ASCII), or null.</param>
/// <param name="Id">id=NAME: the drive's name in logs and later APIs, or null.</param>
public sealed record DriveSpec(string Path, bool ReadOnly = false, bool DirectIo = false, string? Serial = null, string? Id = null)
{
    /// <summary>The longest serial (VIRTIO_BLK_ID_BYTES).</summary>
    public const int MaxSerialBytes = 20;

    /// <summary>The syntax, for help texts and errors.</summary>
    public const string Syntax = "file=PATH[,readonly=on][,cache=none][,serial=ID][,id=NAME]";

    /// <summary>The name to show for this drive: its id, else its path.</summary>
    public string DisplayName => Id ?? Path;

    /// <summary>Parse a <c>--drive</c> value. Throws <see cref="DriveSpecException"/> with a one-line message naming what is wrong and how to fix it.</summary>
    public static DriveSpec Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return TryParse(text, out var spec, out string? error) ? spec! : throw new DriveSpecException(error!);
    }

    /// <summary>Parse a <c>--drive</c> value; false with a one-line error naming the bad key or value and the fix.</summary>
    public static bool TryParse(string text, out DriveSpec? spec, out string? error)
    {
        spec = null;
        string? path = null, serial = null, id = null;
        bool readOnly = false, direct = false;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(text))
        {
            error = $"--drive: empty value; give {Syntax}";
            return false;
        }

        // As in QEMU's option syntax, ",," stands for a comma inside a value (a path with a comma).
        foreach (string escaped in text.Replace(",,", "\0", StringComparison.Ordinal).Split(','))
        {
            string part = escaped.Replace('\0', ',');
            int equals = part.IndexOf('=');
            if (equals <= 0)
            {
                error = part.Length == 0
                    ? $"--drive: an empty item in '{text}'; separate KEY=VALUE items with single commas ({Syntax})"
                    : $"--drive: '{part}' is not KEY=VALUE; give {Syntax}";
                return false;
            }

            string key = part[..equals], value = part[(equals + 1)..];
            if (!seen.Add(key))
            {
                error = $"--drive: {key}= is given twice; give it once";
                return false;
            }

            switch (key)
            {
                case "file":
                    if (value.Length == 0)
                    {
                        error = "--drive: file= is empty; give the path of a raw image (file=PATH)";
                        return false;
                    }

                    path = value;
                    break;
                case "readonly":
                    if (!TryParseOnOff(value, out readOnly))
                    {
                        error = $"--drive: readonly={value} is not valid; give readonly=on or readonly=off";
                        return false;
                    }

                    break;
                case "cache":
                    if (value is not ("none" or "writeback"))
                    {
                        error = $"--drive: cache={value} is not valid; give cache=none (O_DIRECT) or cache=writeback (the default)";
                        return false;
                    }

                    direct = value == "none";
                    break;
                case "serial":
                    if (!IsValidSerial(value, out string? why))
                    {
                        error = $"--drive: serial={value} {why}";
                        return false;
                    }

                    serial = value;
                    break;
                case "id":
                    if (value.Length == 0 || !value.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
                    {
                        error = $"--drive: id={value} is not valid; use letters, digits, '-', '_' or '.'";
                        return false;
                    }

                    id = value;
                    break;
                default:
                    error = $"--drive: unknown key '{key}'; the keys are file, readonly, cache, serial and id ({Syntax})";
                    return false;
            }
        }

        if (path is null)
        {
            error = $"--drive: file= is missing; give {Syntax}";
            return false;
        }

        spec = new DriveSpec(path, readOnly, direct, serial, id);
        error = null;
        return true;
    }

    private static bool TryParseOnOff(string value, out bool on)
    {
        on = value is "on" or "true" or "yes";
        return on || value is "off" or "false" or "no";
    }

    private static bool IsValidSerial(string value, out string? why)
    {
        if (value.Length == 0)
        {
            why = "is empty; give up to 20 printable ASCII characters or leave serial= out";
            return false;
        }

        if (!value.All(c => c is >= ' ' and <= '~'))
        {
            why = "has characters other than printable ASCII; use letters, digits and punctuation";
            return false;
        }

        if (Encoding.ASCII.GetByteCount(value) > MaxSerialBytes)
        {
            why = $"is {value.Length} characters long; a virtio-blk serial holds at most {MaxSerialBytes}";
            return false;
        }

        why = null;
        return true;
    }
}
