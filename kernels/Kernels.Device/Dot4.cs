using ILGPU.Runtime.Cuda;

namespace Kernels.DeviceCode;

/// <summary>A dot product of four packed signed bytes, accumulated into an int32.</summary>
public interface IDot4
{
    /// <summary>Returns <c>acc + Σ_j a.byte[j] · b.byte[j]</c> with the bytes read as signed.</summary>
    int Dot4(int a, int b, int acc);
}

/// <summary>Portable <see cref="IDot4"/>: sign-extending shifts and four multiply-adds; the same bits on every backend.</summary>
public struct PortableDot4 : IDot4
{
    /// <inheritdoc />
    public readonly int Dot4(int a, int b, int acc) => Packed.Dot4(a, b, acc);
}

/// <summary>
/// <see cref="IDot4"/> through the PTX <c>dp4a.s32.s32</c> instruction (sm_61 and newer). On any other
/// backend it falls back to <see cref="PortableDot4"/>, so the result is the same everywhere.
/// </summary>
public struct Dp4aDot4 : IDot4
{
    /// <inheritdoc />
    public readonly int Dot4(int a, int b, int acc)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("dp4a.s32.s32 %0, %1, %2, %3;", out int result, a, b, acc);
            return result;
        }
        return Packed.Dot4(a, b, acc);
    }
}

/// <summary>Helpers on four signed bytes packed little-endian into an int32.</summary>
public static class Packed
{
    /// <summary>Signed byte <paramref name="j"/> (0..3) of <paramref name="word"/>.</summary>
    public static int Byte(int word, int j) => (word << (24 - 8 * j)) >> 24;

    /// <summary>
    /// Byte permute of the eight bytes <c>b:a</c> (a = bytes 0–3, b = bytes 4–7): byte i of the result is
    /// byte <c>(selector &gt;&gt; 4i) &amp; 7</c> (PTX <c>prmt.b32</c> in its default mode, selectors 0–7
    /// only). On CUDA one <c>prmt</c>; elsewhere 32-bit shifts and masks, with the same bits.
    /// </summary>
    /// <remarks>
    /// The portable form stays in 32 bits on purpose. It once built a 64-bit <c>(uint)a | (long)(uint)b &lt;&lt; 32</c>;
    /// ILGPU 1.5.3 compiles the zero extension <c>(long)(uint)x</c> of an int that was truncated from a long
    /// (<c>(int)group</c> in the tiled sparse kernel) as a sign extension on OpenCL and PTX, so a column byte
    /// ≥ 128 turned the "zero" bytes into 0xFF and the kernel read shared memory out of its tile
    /// (docs/opencl.md, "ILGPU faults").
    /// </remarks>
    public static int Permute(int a, int b, int selector)
    {
        if (CudaAsm.IsSupported)
        {
            CudaAsm.Emit("prmt.b32 %0, %1, %2, %3;", out int result, a, b, selector);
            return result;
        }
        int r = 0;
        for (int i = 0; i < 4; i++)
        {
            int s = (selector >> (4 * i)) & 7;
            int word = s < 4 ? a : b;
            r |= ((word >> (8 * (s & 3))) & 0xFF) << (8 * i);
        }
        return r;
    }

    /// <summary>Portable four-way signed byte dot product with accumulation.</summary>
    public static int Dot4(int a, int b, int acc)
    {
        acc += ((a << 24) >> 24) * ((b << 24) >> 24);
        acc += ((a << 16) >> 24) * ((b << 16) >> 24);
        acc += ((a << 8) >> 24) * ((b << 8) >> 24);
        acc += (a >> 24) * (b >> 24);
        return acc;
    }
}
