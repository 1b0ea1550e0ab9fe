namespace KvmSharp.Cli;

/// <summary>User-facing text for an exception: one line, without the parameter names .NET appends for developers.</summary>
public static class ErrorMessages
{
    public static string OneLine(Exception e)
    {
        string message = e switch
        {
            // ArgumentException appends " (Parameter 'name')" (and "Actual value was ..."): not for users.
            ArgumentOutOfRangeException { ParamName: { } name } range => Strip(range.Message, name, range.ActualValue),
            ArgumentException { ParamName: { } name } argument => Strip(argument.Message, name, null),
            _ => e.Message,
        };
        return string.Join(' ', message.Split(['\r', '\n'], StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static string Strip(string message, string parameter, object? actualValue)
    {
        if (actualValue is not null)
        {
            int actual = message.LastIndexOf("Actual value was", StringComparison.Ordinal);
            if (actual > 0) message = message[..actual];
        }
        return message.Replace($" (Parameter '{parameter}')", "", StringComparison.Ordinal).Trim();
    }
}
