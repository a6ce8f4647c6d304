using System.Diagnostics;
using ILGPU.Runtime.Cuda;
using ILGPU.Runtime.Cuda.API;

namespace Kernels.Energy;

/// <summary>
/// NVIDIA GPU energy through NVML (bound by ILGPU.Algorithms). Preferred: the total-energy counter
/// (<c>nvmlDeviceGetTotalEnergyConsumption</c>, mJ since driver load, Volta and newer), read at the window's
/// edges. Where the counter is not supported (pre-Volta, many vGPUs) board power
/// (<c>nvmlDeviceGetPowerUsage</c>, mW) is sampled every 10 ms on a background thread and integrated
/// (trapezoids); on Ampere and newer that value is a 1 s running average, so such windows carry a 1 s quantum.
/// The energy covers the whole GPU, whichever process used it.
/// </summary>
public sealed class NvmlEnergySource : EnergySource
{
    private readonly NvmlDevice _device;
    private readonly NvmlAPI _api;
    private readonly IntPtr _handle;
    private readonly Lock _sync = new();
    private readonly ulong _firstMillijoules;
    private ulong _lastMillijoules;
    private double _offsetJoules;
    private EnergyIssues _pending;
    private readonly Thread? _sampler;
    private volatile bool _stop;
    private double _integratedJoules;
    private long _lastSampleTimestamp;
    private double _lastSampleWatts;

    private NvmlEnergySource(NvmlDevice device, string name, bool counter, ulong first, double? limitWatts)
    {
        _device = device;
        _api = device.API;
        _handle = device.DeviceHandle;
        DeviceName = name;
        PowerLimitWatts = limitWatts;
        Kind = counter ? EnergySourceKind.NvmlEnergyCounter : EnergySourceKind.NvmlPowerIntegrated;
        _firstMillijoules = _lastMillijoules = first;
        if (!counter)
        {
            _lastSampleTimestamp = Stopwatch.GetTimestamp();
            _lastSampleWatts = PowerWatts() ?? 0;
            _sampler = new Thread(Sample) { IsBackground = true, Name = "Kernels NVML power sampler" };
            _sampler.Start();
        }
    }

    /// <summary>The GPU's name as NVML reports it.</summary>
    public string DeviceName { get; }

    /// <inheritdoc/>
    public override EnergySourceKind Kind { get; }

    /// <inheritdoc/>
    public override EnergyBoundary Boundary => EnergyBoundary.Gpu;

    /// <inheritdoc/>
    public override string Description => Kind == EnergySourceKind.NvmlEnergyCounter
        ? $"NVML total-energy counter of {DeviceName}"
        : $"NVML board power of {DeviceName}, sampled every 10 ms and integrated (no energy counter on this GPU)";

    /// <summary>
    /// The counter updates every 20–100 ms (Zeus, PETSc): 0.1 s is assumed. Integrated power on Ampere and newer
    /// is a 1 s running average: 1 s is assumed.
    /// </summary>
    public override double UpdatePeriodSeconds => Kind == EnergySourceKind.NvmlEnergyCounter ? 0.1 : 1.0;

    /// <inheritdoc/>
    public override double ResolutionJoules => 1e-3;

    /// <summary>The enforced power limit (<c>nvmlDeviceGetEnforcedPowerLimit</c>), when NVML reports it.</summary>
    public override double? PowerLimitWatts { get; }

    /// <summary>Opens NVML for a CUDA session's GPU, or returns null with the reason (not CUDA, NVML missing, neither counter nor power supported).</summary>
    public static NvmlEnergySource? TryCreate(KernelSession session, out string reason)
    {
        ArgumentNullException.ThrowIfNull(session);
        if (session.Accelerator is not CudaAccelerator cuda)
        {
            reason = $"NVML needs a CUDA session, got {session.Backend.ToName()}";
            return null;
        }
        return TryOpen(() => NvmlDevice.CreateFromAccelerator(cuda), out reason);
    }

    /// <summary>Opens NVML for the GPU with NVML index <paramref name="index"/>, or returns null with the reason.</summary>
    public static NvmlEnergySource? TryCreate(uint index, out string reason) =>
        TryOpen(() => NvmlDevice.CreateFromIndex(index), out reason);

    private static NvmlEnergySource? TryOpen(Func<NvmlDevice> open, out string reason)
    {
        NvmlDevice device;
        try
        {
            device = open();
        }
#pragma warning disable CA1031 // NVML missing or failing is a normal outcome here (no driver, no GPU): reported as the reason.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            reason = $"NVML unavailable: {ex.GetType().Name}: {ex.Message}";
            return null;
        }

        try
        {
            string name = device.API.DeviceGetName(device.DeviceHandle, out string? n) == NvmlReturn.NVML_SUCCESS && n is not null ? n : "NVIDIA GPU";
            double? limit = device.API.DeviceGetEnforcedPowerLimit(device.DeviceHandle, out uint mw) == NvmlReturn.NVML_SUCCESS ? mw / 1000.0 : null;
            NvmlReturn energy = device.API.DeviceGetTotalEnergyConsumption(device.DeviceHandle, out ulong mj);
            if (energy == NvmlReturn.NVML_SUCCESS)
            {
                reason = "";
                return new NvmlEnergySource(device, name, counter: true, mj, limit);
            }
            NvmlReturn power = device.API.DeviceGetPowerUsage(device.DeviceHandle, out _);
            if (power == NvmlReturn.NVML_SUCCESS)
            {
                reason = $"energy counter: {energy}; using integrated power";
                return new NvmlEnergySource(device, name, counter: false, 0, limit);
            }
            device.Dispose();
            reason = $"NVML reports neither energy ({energy}) nor power ({power}) for {name}";
            return null;
        }
#pragma warning disable CA1031 // As above: any NVML failure means "no NVML source", with the reason.
        catch (Exception ex)
#pragma warning restore CA1031
        {
            device.Dispose();
            reason = $"NVML failed: {ex.GetType().Name}: {ex.Message}";
            return null;
        }
    }

    /// <inheritdoc/>
    public override EnergyReading Read()
    {
        lock (_sync)
        {
            long now = Stopwatch.GetTimestamp();
            if (Kind == EnergySourceKind.NvmlPowerIntegrated)
            {
                SampleOnce();
                EnergyIssues f = _pending;
                _pending = EnergyIssues.None;
                return new EnergyReading(_integratedJoules, now, f);
            }

            EnergyIssues flags = _pending;
            _pending = EnergyIssues.None;
            if (_api.DeviceGetTotalEnergyConsumption(_handle, out ulong mj) != NvmlReturn.NVML_SUCCESS)
                flags |= EnergyIssues.ReadFailed;
            else if (mj < _lastMillijoules)
            {
                // Driver reload: the counter restarted from 0. Keep what was counted before; flag the window.
                _offsetJoules += (_lastMillijoules - _firstMillijoules) / 1000.0;
                _lastMillijoules = mj;
                flags |= EnergyIssues.CounterResetUncorrected;
                return new EnergyReading(_offsetJoules, now, flags);
            }
            else
                _lastMillijoules = mj;
            return new EnergyReading(_offsetJoules + (_lastMillijoules - _firstMillijoules) / 1000.0, now, flags);
        }
    }

    private double? PowerWatts() =>
        _api.DeviceGetPowerUsage(_handle, out uint mw) == NvmlReturn.NVML_SUCCESS ? mw / 1000.0 : null;

    private void Sample()
    {
        while (!_stop)
        {
            lock (_sync)
                SampleOnce();
            Thread.Sleep(10);
        }
    }

    private void SampleOnce()
    {
        long now = Stopwatch.GetTimestamp();
        double? watts = PowerWatts();
        if (watts is null)
        {
            _pending |= EnergyIssues.ReadFailed;
            return;
        }
        double dt = Stopwatch.GetElapsedTime(_lastSampleTimestamp, now).TotalSeconds;
        _integratedJoules += 0.5 * (watts.Value + _lastSampleWatts) * dt;
        _lastSampleTimestamp = now;
        _lastSampleWatts = watts.Value;
    }

    /// <inheritdoc/>
    protected override void Dispose(bool disposing)
    {
        _stop = true;
        _sampler?.Join();
        if (disposing)
            _device.Dispose();
        base.Dispose(disposing);
    }
}
