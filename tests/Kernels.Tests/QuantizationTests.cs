namespace Kernels.Tests;

public class QuantizationTests
{
    [Theory]
    [InlineData(QuantizationGranularity.PerTensor)]
    [InlineData(QuantizationGranularity.PerRow)]
    [InlineData(QuantizationGranularity.PerColumn)]
    public void RoundTripErrorIsAtMostHalfAScale(QuantizationGranularity granularity)
    {
        Seeded.Run((random, seed) =>
        {
            int rows = random.Next(1, 40), cols = random.Next(1, 40);
            float[] x = Seeded.Floats(random, rows * cols, -3f, 3f);
            // Rows of very different magnitude make per-row and per-column scales differ.
            for (int r = 0; r < rows; r++)
            {
                for (int c = 0; c < cols; c++)
                    x[r * cols + c] *= MathF.Pow(10, r % 5 - 2);
            }
            QuantizedMatrix q = Quantization.Quantize(x, rows, cols, granularity);
            float[] back = Quantization.Dequantize(q);
            Assert.Equal(granularity switch { QuantizationGranularity.PerTensor => 1, QuantizationGranularity.PerRow => rows, _ => cols }, q.Scales.Length);
            for (int i = 0; i < x.Length; i++)
            {
                float scale = q.ScaleAt(i / cols, i % cols);
                Assert.InRange(q.Values[i], -127, 127);
                Assert.True(Math.Abs(back[i] - x[i]) <= scale * 0.5 * (1 + 1e-5) + 1e-30,
                    $"element {i}: {x[i]} came back as {back[i]} with scale {scale}");
            }
            // The largest magnitude of each group maps to ±127.
            Assert.Contains(q.Values, v => v is 127 or -127);
        });
    }

    [Fact]
    public void RoundsHalfToEvenAndClamps()
    {
        Assert.Equal(2, Quantization.QuantizeValue(2.5f, 1f));
        Assert.Equal(4, Quantization.QuantizeValue(3.5f, 1f));
        Assert.Equal(-2, Quantization.QuantizeValue(-2.5f, 1f));
        Assert.Equal(0, Quantization.QuantizeValue(0.5f, 1f));
        Assert.Equal(127, Quantization.QuantizeValue(1000f, 1f));
        Assert.Equal(-127, Quantization.QuantizeValue(-1000f, 1f));
    }

    [Fact]
    public void AllZeroRowsGetScaleZeroAndDequantizeToZero()
    {
        float[] x = [0, 0, 0, 1, -2, 0.5f, 0, 0, 0];
        QuantizedMatrix q = Quantization.Quantize(x, 3, 3, QuantizationGranularity.PerRow);
        Assert.Equal([0f, 2f / 127, 0f], q.Scales);
        Assert.Equal(new sbyte[] { 0, 0, 0, 64, -127, 32, 0, 0, 0 }, q.Values);
        float[] back = Quantization.Dequantize(q);
        Assert.Equal(0f, back[0]);
        Assert.Equal(0f, back[8]);
        QuantizedMatrix zeros = Quantization.Quantize(new float[6], 2, 3, QuantizationGranularity.PerTensor);
        Assert.Equal([0f], zeros.Scales);
        Assert.All(Quantization.Dequantize(zeros), v => Assert.Equal(0f, v));
    }

    [Fact]
    public void RejectsNonFiniteAndWrongLengths()
    {
        var ex = Assert.Throws<ArgumentException>(() => Quantization.Quantize([1, float.NaN], 1, 2, QuantizationGranularity.PerRow));
        Assert.Equal("x", ex.ParamName);
        Assert.Contains("index 1", ex.Message, StringComparison.Ordinal);
        ex = Assert.Throws<ArgumentException>(() => Quantization.Quantize([1, 2, 3], 2, 2, QuantizationGranularity.PerRow));
        Assert.Equal("x", ex.ParamName);
        Assert.ThrowsAny<ArgumentException>(() => Quantization.Quantize([1], 0, 1, QuantizationGranularity.PerRow));
    }

    [Fact]
    public void QuantizedLinearLayerThroughTheKernelApproximatesTheFloatLayer()
    {
        KernelSession session = Sessions.Get(Backend.Cpu);
        Seeded.Run((random, seed) =>
        {
            int tokens = 9, inFeatures = 70, outFeatures = 13;
            float[] x = Seeded.Floats(random, tokens * inFeatures, -1, 1);
            float[] w = Seeded.Floats(random, outFeatures * inFeatures, -0.2f, 0.2f);
            float[] bias = Seeded.Floats(random, outFeatures, -1, 1);
            QuantizedMatrix qx = Quantization.Quantize(x, tokens, inFeatures, QuantizationGranularity.PerRow);
            QuantizedMatrix qw = Quantization.Quantize(w, outFeatures, inFeatures, QuantizationGranularity.PerRow);
            float[] y = session.Int8GemmDequant(qx.Values, qw.Values, qx.Scales, qw.Scales, bias, tokens, outFeatures, inFeatures);
            for (int t = 0; t < tokens; t++)
            {
                for (int o = 0; o < outFeatures; o++)
                {
                    double exact = bias[o];
                    for (int i = 0; i < inFeatures; i++)
                        exact += (double)x[t * inFeatures + i] * w[o * inFeatures + i];
                    Assert.True(Math.Abs(y[t * outFeatures + o] - exact) < 0.05, $"token {t}, output {o}: {y[t * outFeatures + o]} vs {exact}");
                }
            }
        });
    }
}
