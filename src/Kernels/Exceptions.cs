namespace Kernels;

/// <summary>A requested backend has no usable device here; <see cref="Reason"/> says why.</summary>
public sealed class BackendUnavailableException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public BackendUnavailableException(Backend backend, string reason)
        : base($"Backend {backend.ToName()} is not usable here: {reason}")
    {
        Backend = backend;
        Reason = reason;
    }

    /// <summary>The backend that was asked for.</summary>
    public Backend Backend { get; }

    /// <summary>Why it cannot be used.</summary>
    public string Reason { get; }
}

/// <summary>An allocation does not fit in the device's memory.</summary>
public sealed class DeviceOutOfMemoryException : InvalidOperationException
{
    /// <summary>Creates the exception.</summary>
    public DeviceOutOfMemoryException(string message, Exception? inner = null)
        : base(message, inner)
    {
    }
}
