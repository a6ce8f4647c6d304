using ILGPU;
using ILGPU.Runtime;

namespace Kernels;

/// <summary>
/// An ILGPU accelerator with the Kernels kernels compiled for it (once per session, on first use),
/// and the operations on it: device-resident buffers with stream-ordered calls for embedders, and a
/// convenience layer on host arrays.
/// </summary>
/// <remarks>
/// Thread safety: a session may be used from several threads. Every call takes the session's lock,
/// so calls from different threads are serialized (they run correctly, one after another); use one
/// session per thread for concurrency. Calls on device buffers are enqueued on the session's stream
/// in call order; <see cref="Synchronize"/> and the copies back to the host wait for them.
/// </remarks>
public sealed partial class KernelSession : IDisposable
{
    private readonly Context _context;
    private readonly Accelerator _accelerator;
    private readonly Lock _sync = new();
    private readonly Dictionary<string, Delegate> _kernels = [];
    private long _allocatedBytes;
    private bool _disposed;

    private KernelSession(Context context, Accelerator accelerator, Backend backend)
    {
        _context = context;
        _accelerator = accelerator;
        Backend = backend;
        DeviceName = backend switch
        {
            Backend.Cpu => "ILGPU CPU accelerator",
            Backend.CpuSimd => DeviceCatalog.CpuSimdName(),
            _ => accelerator.Name,
        };
        DeviceMemoryBytes = backend is Backend.Cpu or Backend.CpuSimd
            ? GC.GetGCMemoryInfo().TotalAvailableMemoryBytes
            : accelerator.MemorySize;
        _dummy = accelerator.Allocate1D<float>(1);
        _ptx = new Backends.CudaPtx.PtxModules(this);
        // The one place each op's backend is chosen: one line per backend.
        (_gemm, _sparse, _attention, _layer) = backend switch
        {
            Backend.CpuSimd => (new Backends.Simd.SimdGemmBackend(this), new Backends.Simd.SimdSparseBackend(this), new Backends.Simd.SimdAttentionBackend(this), new Backends.Simd.SimdLayerBackend(this)),
            Backend.Cuda => (new Backends.CudaPtx.PtxGemmBackend(this, _ptx), new Backends.CudaPtx.PtxSparseBackend(this, _ptx), new Backends.Ilgpu.IlgpuAttentionBackend(this), new Backends.Ilgpu.IlgpuLayerBackend(this)),
            _ => ((IGemmBackend)new Backends.Ilgpu.IlgpuGemmBackend(this), (ISparseBackend)new Backends.Ilgpu.IlgpuSparseBackend(this), (IAttentionBackend)new Backends.Ilgpu.IlgpuAttentionBackend(this), (ILayerBackend)new Backends.Ilgpu.IlgpuLayerBackend(this)),
        };
    }

    private readonly Backends.CudaPtx.PtxModules _ptx;
    private readonly IGemmBackend _gemm;
    private readonly ISparseBackend _sparse;
    private readonly IAttentionBackend _attention;
    private readonly ILayerBackend _layer;

    /// <summary>The session's sparse backend (uploads ask it to prepare their weights).</summary>
    internal ISparseBackend SparseBackend => _sparse;

    /// <summary>The backend actually chosen.</summary>
    public Backend Backend { get; }

    /// <summary>The device's name.</summary>
    public string DeviceName { get; }

    /// <summary>Device memory in bytes; allocations beyond it are refused with <see cref="DeviceOutOfMemoryException"/>.</summary>
    public long DeviceMemoryBytes { get; }

    /// <summary>Bytes of device memory held by this session now: live buffers and the session's reusable scratch space.</summary>
    public long AllocatedBytes => Interlocked.Read(ref _allocatedBytes);

    /// <summary>The kernel the convenience calls use (default <see cref="Kernels.GemmKernel.Auto"/>).</summary>
    public GemmKernel GemmKernel { get; set; } = GemmKernel.Auto;

    internal AcceleratorStream Stream => _accelerator.DefaultStream;

    internal Accelerator Accelerator => _accelerator;

    /// <summary>
    /// Opens a session on <paramref name="backend"/>. <see cref="Backend.Auto"/> honours
    /// <c>KERNELS_BACKEND</c>, else picks CUDA, then a usable OpenCL device, then the CPU accelerator.
    /// </summary>
    /// <exception cref="BackendUnavailableException">The backend asked for has no usable device.</exception>
    public static KernelSession Create(Backend backend = Backend.Auto)
    {
        if (backend == Backend.Auto)
        {
            string? env = Environment.GetEnvironmentVariable(BackendNames.EnvironmentVariable);
            if (!string.IsNullOrWhiteSpace(env))
                backend = BackendNames.Parse(env, BackendNames.EnvironmentVariable);
        }

        if (backend != Backend.Auto)
        {
            KernelSession? chosen = CreateOn(backend, out string? failure);
            return chosen ?? throw new BackendUnavailableException(backend, failure ?? ReasonUnavailable(backend));
        }

        // Auto takes OpenCL GPUs only: an OpenCL CPU device (PoCL) is much slower than cpu-simd on the same CPU.
        return CreateOn(Backend.Cuda, out _) ?? CreateOn(Backend.OpenCL, out _, gpuOnly: true) ?? CreateOn(Backend.CpuSimd, out _)
            ?? throw new BackendUnavailableException(Backend.CpuSimd, "the CPU could not be set up");
    }

    /// <summary>
    /// A session on the ILGPU CPU accelerator simulating <paramref name="warpSize"/> lanes per warp and
    /// <paramref name="multiprocessors"/> multiprocessors (see <see cref="DeviceCatalog.CreateCpuDevice"/>):
    /// the tests run the kernels under several schedules with it.
    /// </summary>
    internal static KernelSession CreateCpu(int warpSize, int multiprocessors)
    {
        Context context = DeviceCatalog.CreateContext(Backend.Cpu, DeviceCatalog.CreateCpuDevice(warpSize, multiprocessors));
        Device device = DeviceCatalog.DevicesOf(context, Backend.Cpu).First();
        return new KernelSession(context, device.CreateAccelerator(context), Backend.Cpu);
    }

    /// <summary>A session on the first usable device of <paramref name="backend"/>, or null with the start failure (if any).</summary>
    private static KernelSession? CreateOn(Backend backend, out string? failure, bool gpuOnly = false)
    {
        failure = null;
        Context? context = null;
        try
        {
            context = DeviceCatalog.CreateContext(backend);
            foreach (Device device in DeviceCatalog.DevicesOf(context, backend))
            {
                if (DeviceCatalog.WhyUnusable(device) is not null)
                    continue;
                if (gpuOnly && device is ILGPU.Runtime.OpenCL.CLDevice { DeviceType: ILGPU.Runtime.OpenCL.CLDeviceType.CL_DEVICE_TYPE_CPU })
                    continue;
                Accelerator accelerator = device.CreateAccelerator(context);
                return new KernelSession(context, accelerator, backend);
            }
        }
#pragma warning disable CA1031 // A backend that fails to start is skipped by Auto and reported for explicit requests.
        catch (Exception ex) when (backend is not (Backend.Cpu or Backend.CpuSimd))
#pragma warning restore CA1031
        {
            failure = $"{ex.GetType().Name}: {ex.Message}";
        }
        context?.Dispose();
        return null;
    }

    private static string ReasonUnavailable(Backend backend)
    {
        var reasons = DeviceCatalog.List()
            .Where(d => d.Backend == backend)
            .Select(d => d.Usable ? $"{d.Name}: failed to start" : $"{d.Name}: {d.Reason}")
            .ToList();
        return reasons.Count == 0 ? "no device found" : string.Join("; ", reasons);
    }

    /// <summary>Allocates a device buffer of <paramref name="length"/> elements (contents undefined).</summary>
    /// <exception cref="DeviceOutOfMemoryException">It does not fit in the device's memory.</exception>
    public DeviceBuffer<T> Allocate<T>(long length)
        where T : unmanaged
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            return new DeviceBuffer<T>(this, AllocateRaw<T>(length, nameof(length)));
        }
    }

    /// <summary>Allocates a device buffer holding a copy of <paramref name="data"/>.</summary>
    public DeviceBuffer<T> Upload<T>(ReadOnlySpan<T> data)
        where T : unmanaged
    {
        if (data.IsEmpty)
            throw new ArgumentException("data: expected at least one element, got none.", nameof(data));
        DeviceBuffer<T> buffer = Allocate<T>(data.Length);
        buffer.CopyFrom(data);
        return buffer;
    }

    /// <summary>Waits until every call enqueued so far has finished.</summary>
    public void Synchronize()
    {
        lock (_sync)
        {
            ThrowIfDisposed();
            Stream.Synchronize();
        }
    }

    /// <summary>Releases the accelerator, its compiled kernels and every buffer of the session.</summary>
    public void Dispose()
    {
        lock (_sync)
        {
            if (_disposed)
                return;
            _disposed = true;
            _gemm.Dispose();
            _sparse.Dispose();
            _ptx.Dispose();
            _accelerator.Dispose();
            _context.Dispose();
            Interlocked.Exchange(ref _allocatedBytes, 0);
        }
    }

    internal Lock SyncRoot => _sync;

    internal void Release<T>(DeviceBuffer<T> owner, MemoryBuffer1D<T, Stride1D.Dense> buffer, long bytes)
        where T : unmanaged
    {
        lock (_sync)
        {
            if (_disposed)
                return;
            Stream.Synchronize();
            _gemm.Forget(owner);
            buffer.Dispose();
            Interlocked.Add(ref _allocatedBytes, -bytes);
        }
    }

    internal MemoryBuffer1D<T, Stride1D.Dense> AllocateRaw<T>(long length, string argument)
        where T : unmanaged
    {
        if (length < 1)
            throw new ArgumentOutOfRangeException(argument, length, $"{argument}: expected ≥ 1 elements, got {length}.");
        long size = Unsafe.SizeOf<T>();
        if (length > long.MaxValue / size || length * size > DeviceMemoryBytes)
            throw new DeviceOutOfMemoryException(
                $"{argument}: {length} elements of {size} bytes do not fit in the device's {DeviceMemoryBytes} bytes ({DeviceName}).");
        try
        {
            MemoryBuffer1D<T, Stride1D.Dense> buffer = _accelerator.Allocate1D<T>(length);
            Interlocked.Add(ref _allocatedBytes, length * size);
            return buffer;
        }
        catch (Exception ex) when (ex is OutOfMemoryException or InsufficientMemoryException or AcceleratorException)
        {
            throw new DeviceOutOfMemoryException(
                $"{argument}: allocating {length * size} bytes on {DeviceName} failed: {ex.Message}", ex);
        }
    }

    /// <summary>Counts <paramref name="bytes"/> (negative: frees) in <see cref="AllocatedBytes"/>, for memory a backend holds besides buffers.</summary>
    internal void AddAllocated(long bytes) => Interlocked.Add(ref _allocatedBytes, bytes);

    internal void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);

    internal TDelegate Kernel<TDelegate>(string key, Func<Accelerator, TDelegate> load)
        where TDelegate : Delegate
    {
        if (!_kernels.TryGetValue(key, out Delegate? kernel))
        {
            kernel = load(_accelerator);
            _kernels[key] = kernel;
        }
        return (TDelegate)kernel;
    }
}
