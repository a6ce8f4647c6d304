using System.Text;

namespace Kernels.DeviceCode.Ptx;

/// <summary>
/// The shape of the 2:4 sparse tensor-core kernel: a warp computes 16·<see cref="FragmentsM"/> weight
/// rows (output channels) × 8·<see cref="FragmentsN"/> tokens with
/// <c>mma.sp.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32</c>; a block has <see cref="WarpsM"/>×<see cref="WarpsN"/> warps.
/// </summary>
/// <param name="FragmentsM">m16 fragments (16 weight rows each) per warp (1..4).</param>
/// <param name="FragmentsN">n8 fragments (8 tokens each) per warp (1..4).</param>
/// <param name="WarpsM">Warps along the weight rows.</param>
/// <param name="WarpsN">Warps along the tokens.</param>
/// <param name="KUnroll">64-column k steps loaded before the first mma of a loop iteration (1..4).</param>
public sealed record SparseTensorCoreTile(int FragmentsM, int FragmentsN, int WarpsM, int WarpsN, int KUnroll)
{
    /// <summary>Threads per block.</summary>
    public int Threads => 32 * WarpsM * WarpsN;

    /// <summary>Weight rows (output columns) per block.</summary>
    public int RowsPerBlock => 16 * FragmentsM * WarpsM;

    /// <summary>Tokens (output rows) per block.</summary>
    public int TokensPerBlock => 8 * FragmentsN * WarpsN;

    /// <summary>A short name: <c>sp24_r{RowsPerBlock}_t{TokensPerBlock}_f{FragmentsM}x{FragmentsN}_u{KUnroll}</c>.</summary>
    public string Name => $"sp24_r{RowsPerBlock}_t{TokensPerBlock}_f{FragmentsM}x{FragmentsN}_u{KUnroll}";

    /// <summary>Throws <see cref="ArgumentException"/> when the generator cannot build this shape.</summary>
    public void Validate()
    {
        if (FragmentsM is < 1 or > 4 || FragmentsN is < 1 or > 4)
            throw new ArgumentException($"tile: FragmentsM and FragmentsN must be 1..4, got {FragmentsM}×{FragmentsN}", "tile");
        if (WarpsM < 1 || WarpsN < 1 || WarpsM * WarpsN > 16)
            throw new ArgumentException($"tile: 1..16 warps, got {WarpsM}×{WarpsN}", "tile");
        if (KUnroll is < 1 or > 4)
            throw new ArgumentException($"tile: KUnroll must be 1..4, got {KUnroll}", "tile");
    }
}

/// <summary>
/// Generates the PTX of the 2:4 sparse int8 tensor-core GEMM <c>Y[token, channel] = Σk X[token, k]·W[channel, k]</c>
/// for compute capability 8.0 and newer: it computes Yᵀ = W·Xᵀ with the 2:4 weights W as the sparse A
/// operand of <c>mma.sp.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32</c> and the tokens X as the dense B operand.
/// </summary>
/// <remarks>
/// <para>
/// Sources of the fragment layouts (PTX ISA 9.x, section "Matrix fragments for sparse mma.m16n8k64 with
/// .u8/.s8 type" and "Sparse matrix storage", read as text mirrors of docs.nvidia.com; the figures
/// themselves are images we could not read): g = lane/4, t = lane%4.
/// A (text): register q of a lane holds 4 kept int8 values of row g (q = 0, 2) or g+8 (q = 1, 3) out of
/// the 8 columns 8t..8t+7 (q &lt; 2) or 32+8t..32+8t+7 (q ≥ 2), two per 4-column chunk in the order of
/// the chunk's two metadata indices. Metadata (text): one .b32 of 16 2-bit indices, each pair the two
/// positions of one 4-wide chunk; for m16n8k64 .s8 "all threads within a group of four consecutive
/// threads contribute the sparsity metadata", so the sparsity selector must be 0. Which lane holds
/// which chunks is in Figures 136/137 (images): we use lane (g, t) = row g + 8·(t&amp;1), chunks
/// 8·(t&gt;&gt;1) .. +7, chunk i in bits 4i..4i+3 (low pair = first index). That assignment is taken from a
/// third party's hardware probe (a Triton dot_sparse write-up: "row = (T&gt;&gt;2) + 8*(T&amp;1),
/// col = 2*((T&gt;&gt;1)&amp;1), E[15:0] = meta[row][col], E[31:16] = meta[row][col+1]" in 16-column
/// units), not from the figure: it is the first thing a GPU run must confirm.
/// B (figures 132-135, images): assumed to be two dense m16n8k32 B fragments, register q holding
/// k = 16q + 4t .. +3 of token g (the dense layout is text in the ISA; the same write-up says the B
/// k-slot order matches the 16-bit sparse shape).
/// </para>
/// <para>
/// k permutation: a lane loads 16 contiguous bytes of a token row per 64-column step (one 16-byte load)
/// and hands them to the mma as its four B registers, so mma chunk c = 4q + t holds the real chunk
/// <see cref="ActualChunk"/>(c) = 4t + q. The host packs W with the same chunk permutation
/// (<c>SparseTensorCorePacked.Pack</c> in the host library), which leaves every dot product unchanged: chunks move
/// whole, so the 2:4 groups and their metadata indices stay valid.
/// </para>
/// <para>
/// Parameters (<see cref="Parameters"/>): packed values, packed metadata, X (m rows of ldx bytes,
/// 16-byte aligned), the output (Y[token·ldc + channel], int32 or float32), xScale[m], wScale[n] and bias[n]
/// (dequant only), m, n, kSteps = ⌈k/64⌉, ldx, xBytes (bytes of a row of X that may be read: a multiple
/// of 16 ≥ k; bytes from k to xBytes must be zero or meet zero weights, which they do: W is zero there),
/// ldc, hasBias. Grid (⌈n/RowsPerBlock⌉, ⌈m/TokensPerBlock⌉, 1). No shared memory: each warp reads its
/// weight fragments straight from global memory (512 coalesced bytes per 16 rows and step) and its
/// token rows with 16-byte loads.
/// </para>
/// </remarks>
public static class SparseTensorCorePtx
{
    /// <summary>The PTX ISA version of the plain <c>mma.sp</c> module (CUDA 11.8 ptxas accepts it; mma.sp m16n8k64 s8 needs ≥ 7.1).</summary>
    public const string IsaVersion = "7.8";

    /// <summary>The PTX ISA version of the <c>mma.sp::ordered_metadata</c> module (introduced in PTX ISA 8.5).</summary>
    public const string OrderedIsaVersion = "8.5";

    /// <summary>The parameters, in order, as (PTX type, name).</summary>
    public static IReadOnlyList<(string Type, string Name)> Parameters { get; } =
    [
        ("u64", "p_w"), ("u64", "p_meta"), ("u64", "p_x"), ("u64", "p_out"), ("u64", "p_xscale"), ("u64", "p_wscale"), ("u64", "p_bias"),
        ("u32", "p_m"), ("u32", "p_n"), ("u32", "p_ksteps"), ("u32", "p_ldx"), ("u32", "p_xbytes"), ("u32", "p_ldc"), ("u32", "p_hasbias"),
    ];

    /// <summary>The tiles the library ships: up to 8 tokens, up to 32 tokens, and many tokens.</summary>
    public static IReadOnlyList<SparseTensorCoreTile> Tiles { get; } =
    [
        new SparseTensorCoreTile(1, 1, 4, 1, 4),
        new SparseTensorCoreTile(1, 4, 4, 1, 2),
        new SparseTensorCoreTile(2, 4, 2, 2, 2),
    ];

    /// <summary>The real 4-column chunk (0..15) of a 64-column step that mma chunk position <paramref name="mmaChunk"/> holds.</summary>
    public static int ActualChunk(int mmaChunk) => 4 * (mmaChunk & 3) + (mmaChunk >> 2);

    /// <summary>The tile a call with <paramref name="m"/> tokens uses.</summary>
    public static SparseTensorCoreTile TileFor(int m) => m <= 8 ? Tiles[0] : m <= 32 ? Tiles[1] : Tiles[2];

    /// <summary>The entry name of a tile and epilogue.</summary>
    public static string EntryName(SparseTensorCoreTile tile, PtxEpilogue epilogue)
    {
        ArgumentNullException.ThrowIfNull(tile);
        return $"kernels_{tile.Name}_{(epilogue == PtxEpilogue.Raw ? "i32" : "dequant")}";
    }

    /// <summary>The mma instruction: plain <c>mma.sp</c>, or <c>mma.sp::ordered_metadata</c> (PTX ISA 8.5).</summary>
    public static string MmaOpcode(bool orderedMetadata) =>
        orderedMetadata
            ? "mma.sp::ordered_metadata.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32"
            : "mma.sp.sync.aligned.m16n8k64.row.col.s32.s8.s8.s32";

    /// <summary>One module with both epilogues of every given tile.</summary>
    public static string Module(IEnumerable<SparseTensorCoreTile> tiles, bool orderedMetadata)
    {
        ArgumentNullException.ThrowIfNull(tiles);
        var text = new StringBuilder();
        text.Append("// Generated by Kernels.DeviceCode.Ptx.SparseTensorCorePtx: 2:4 sparse int8 tensor-core GEMM (mma.sp m16n8k64 s8).\n");
        text.Append(".version ").Append(orderedMetadata ? OrderedIsaVersion : IsaVersion).Append('\n');
        text.Append(".target ").Append(TensorCorePtx.Target).Append('\n');
        text.Append(".address_size 64\n");
        foreach (SparseTensorCoreTile tile in tiles)
        {
            foreach (PtxEpilogue epilogue in new[] { PtxEpilogue.Raw, PtxEpilogue.Dequant })
                text.Append('\n').Append(Entry(tile, epilogue, orderedMetadata));
        }
        return text.ToString();
    }

    /// <summary>The module the library loads: every tile of <see cref="Tiles"/>.</summary>
    public static string LibraryModule(bool orderedMetadata) => Module(Tiles, orderedMetadata);

    /// <summary>The text of one entry.</summary>
    public static string Entry(SparseTensorCoreTile tile, PtxEpilogue epilogue, bool orderedMetadata)
    {
        ArgumentNullException.ThrowIfNull(tile);
        tile.Validate();
        var w = new PtxWriter();
        string name = EntryName(tile, epilogue);
        int fm = tile.FragmentsM, fn = tile.FragmentsN, unroll = tile.KUnroll;

        foreach ((string type, string parameter) in Parameters)
        {
            string reg = type == "u64" ? w.D(parameter[2..]) : w.R(parameter[2..]);
            w.Op($"ld.param.{type} {reg}, [{parameter}]");
        }
        TensorCorePtx.LaneRegisters(w);
        w.Op($"setp.ne.s32 {w.P("has_bias")}, %hasbias, 0");
        w.Comment($"warp (wm, wn) of {tile.WarpsM}×{tile.WarpsN}: weight row tiles rt0 .. rt0+{fm - 1}, tokens tok0 .. tok0+{8 * fn - 1}");
        string wm = w.R("warp_m"), wn = w.R("warp_n"), rt0 = w.R("rt_base"), tok0 = w.R("tok_base"), rowTiles = w.R("row_tiles");
        w.Op($"div.u32 {wm}, %warp, {tile.WarpsN}");
        w.Op($"rem.u32 {wn}, %warp, {tile.WarpsN}");
        w.Op($"mov.u32 {w.R("ctaid_x")}, %ctaid.x");
        w.Op($"mov.u32 {w.R("ctaid_y")}, %ctaid.y");
        w.Op($"mul.lo.s32 {rt0}, %ctaid_x, {fm * tile.WarpsM}");
        w.Op($"mad.lo.s32 {rt0}, {wm}, {fm}, {rt0}");
        w.Op($"mul.lo.s32 {tok0}, %ctaid_y, {tile.TokensPerBlock}");
        w.Op($"mad.lo.s32 {tok0}, {wn}, {8 * fn}, {tok0}");
        w.Op($"add.s32 {rowTiles}, %n, 15");
        w.Op($"shr.u32 {rowTiles}, {rowTiles}, 4");

        w.Comment("weight fragments: lane's 16 bytes and metadata word of (row tile, step) at ((rt·ksteps + s)·32 + lane)·16 and ·4");
        string tmp = w.R("tmp"), tmpd = w.D("tmpd");
        for (int i = 0; i < fm; i++)
        {
            string rt = w.R($"rt{i}"), vptr = w.D($"w_ptr{i}"), mptr = w.D($"m_ptr{i}");
            w.Op($"add.s32 {rt}, {rt0}, {i}");
            w.Op($"setp.lt.s32 {w.P($"w_ok{i}")}, {rt}, {rowTiles}");
            w.Op($"mul.lo.s32 {tmp}, {rt}, %ksteps");
            w.Op($"shl.b32 {tmp}, {tmp}, 5");
            w.Op($"add.s32 {tmp}, {tmp}, %lane");
            w.Op($"mul.wide.s32 {vptr}, {tmp}, 16");
            w.Op($"add.u64 {vptr}, {vptr}, %w");
            w.Op($"mul.wide.s32 {mptr}, {tmp}, 4");
            w.Op($"add.u64 {mptr}, {mptr}, %meta");
        }
        w.Comment("token fragments: lane (g, t) reads bytes 16t..16t+15 of each 64-byte step of token tok0 + 8j + g");
        string t16 = w.R("t16");
        w.Op($"shl.b32 {t16}, %t, 4");
        for (int j = 0; j < fn; j++)
        {
            string tok = w.R($"tok{j}"), ptr = w.D($"x_ptr{j}");
            w.Op($"add.s32 {tok}, {tok0}, %g");
            w.Op($"add.s32 {tok}, {tok}, {8 * j}");
            w.Op($"setp.lt.s32 {w.P($"tok_ok{j}")}, {tok}, %m");
            w.Op($"mul.wide.s32 {ptr}, {tok}, %ldx");
            w.Op($"add.u64 {ptr}, {ptr}, %x");
            w.Op($"cvt.u64.u32 {tmpd}, {t16}");
            w.Op($"add.u64 {ptr}, {ptr}, {tmpd}");
        }
        for (int i = 0; i < fm; i++)
        {
            for (int j = 0; j < fn; j++)
            {
                for (int e = 0; e < 4; e++)
                    w.Op($"mov.b32 {w.R($"acc_{i}_{j}_{e}")}, 0");
            }
        }
        w.Comment("fragments of rows past n and tokens past m stay zero (metadata: valid positions 0, 1)");
        for (int u = 0; u < unroll; u++)
        {
            for (int i = 0; i < fm; i++)
            {
                for (int e = 0; e < 4; e++)
                    w.Op($"mov.b32 {w.R($"wv_{u}_{i}_{e}")}, 0");
                w.Op($"mov.b32 {w.R($"wm_{u}_{i}")}, {0x44444444}");
            }
            for (int j = 0; j < fn; j++)
            {
                for (int e = 0; e < 4; e++)
                    w.Op($"mov.b32 {w.R($"xv_{u}_{j}_{e}")}, 0");
            }
        }

        string s = w.R("s"), sEnd = w.R("s_end"), sd = w.D("sd"), ld = w.D("ld_addr"), stop = w.P("stop");
        string chunkOk = w.P("chunk_ok"), ok = w.P("ld_ok");
        void Loads(int u, bool tail)
        {
            string vOff = w.D("v_off"), mOff = w.D("m_off");
            w.Op($"shl.b64 {vOff}, {sd}, 9");
            w.Op($"shl.b64 {mOff}, {sd}, 7");
            for (int i = 0; i < fm; i++)
            {
                string regs = string.Join(", ", Enumerable.Range(0, 4).Select(e => $"%wv_{u}_{i}_{e}"));
                w.Op($"add.u64 {ld}, %w_ptr{i}, {vOff}");
                w.Op($"@%w_ok{i} ld.global.nc.v4.u32 {{{regs}}}, [{ld}+{512 * u}]");
                w.Op($"add.u64 {ld}, %m_ptr{i}, {mOff}");
                w.Op($"@%w_ok{i} ld.global.nc.u32 %wm_{u}_{i}, [{ld}+{128 * u}]");
            }
            w.Op($"shl.b64 {ld}, {sd}, 6");
            for (int j = 0; j < fn; j++)
            {
                string regs = string.Join(", ", Enumerable.Range(0, 4).Select(e => $"%xv_{u}_{j}_{e}"));
                string guard = $"%tok_ok{j}";
                if (tail)
                {
                    for (int e = 0; e < 4; e++)
                        w.Op($"mov.b32 %xv_{u}_{j}_{e}, 0");
                    w.Op($"and.pred {ok}, %tok_ok{j}, {chunkOk}");
                    guard = ok;
                }
                string xa = w.D("x_addr");
                w.Op($"add.u64 {xa}, %x_ptr{j}, {ld}");
                w.Op($"@{guard} ld.global.nc.v4.u32 {{{regs}}}, [{xa}+{64 * u}]");
            }
        }
        string mma = MmaOpcode(orderedMetadata);
        void Mmas(int u)
        {
            for (int i = 0; i < fm; i++)
            {
                string a = string.Join(", ", Enumerable.Range(0, 4).Select(e => $"%wv_{u}_{i}_{e}"));
                for (int j = 0; j < fn; j++)
                {
                    string d = string.Join(", ", Enumerable.Range(0, 4).Select(e => $"%acc_{i}_{j}_{e}"));
                    string b = string.Join(", ", Enumerable.Range(0, 4).Select(e => $"%xv_{u}_{j}_{e}"));
                    w.Op($"{mma} {{{d}}}, {{{a}}}, {{{b}}}, {{{d}}}, %wm_{u}_{i}, 0");
                }
            }
        }

        w.Comment($"main loop: {unroll} whole steps at a time while they lie inside xbytes (no chunk checks)");
        string full = w.R("full_steps");
        w.Op($"shr.u32 {full}, %xbytes, 6");
        w.Op($"min.s32 {full}, {full}, %ksteps");
        w.Op($"sub.s32 {sEnd}, {full}, {unroll}");
        w.Op($"mov.u32 {s}, 0");
        w.Label("MAIN_LOOP");
        w.Op($"setp.gt.s32 {stop}, {s}, {sEnd}");
        w.Op($"@{stop} bra.uni TAIL_STEP");
        w.Op($"cvt.u64.u32 {sd}, {s}");
        for (int u = 0; u < unroll; u++)
            Loads(u, tail: false);
        for (int u = 0; u < unroll; u++)
            Mmas(u);
        w.Op($"add.s32 {s}, {s}, {unroll}");
        w.Op("bra.uni MAIN_LOOP");

        w.Comment("tail: the remaining steps one at a time; a lane's 16-byte chunk of X counts only below xbytes");
        w.Label("TAIL_STEP");
        w.Op($"setp.ge.s32 {stop}, {s}, %ksteps");
        w.Op($"@{stop} bra.uni EPILOGUE");
        w.Op($"cvt.u64.u32 {sd}, {s}");
        string chunk = w.R("chunk");
        w.Op($"shl.b32 {chunk}, {s}, 6");
        w.Op($"add.s32 {chunk}, {chunk}, {t16}");
        w.Op($"setp.lt.s32 {chunkOk}, {chunk}, %xbytes");
        Loads(0, tail: true);
        Mmas(0);
        w.Op($"add.s32 {s}, {s}, 1");
        w.Op("bra.uni TAIL_STEP");

        w.Label("EPILOGUE");
        w.Comment("fragment (i, j): d0,d1 = weight row 16·rt_i + g (channel), tokens tok0 + 8j + 2t, +1; d2,d3 = row + 8");
        string aS = w.F("e_ascale"), address = w.D("e_addr"), okStore = w.P("e_ok"), colOff = w.D("e_col_off");
        for (int i = 0; i < fm; i++)
        {
            for (int h = 0; h < 2; h++)
            {
                string row = w.R($"e_row_{i}_{h}");
                w.Op($"shl.b32 {row}, %rt{i}, 4");
                w.Op($"add.s32 {row}, {row}, %g");
                if (h == 1)
                    w.Op($"add.s32 {row}, {row}, 8");
                w.Op($"setp.lt.s32 {w.P($"e_row_ok_{i}_{h}")}, {row}, %n");
                if (epilogue == PtxEpilogue.Dequant)
                {
                    TensorCorePtx.LoadScale(w, w.F($"e_wscale_{i}_{h}"), $"%e_row_ok_{i}_{h}", "%wscale", row);
                    string biasOk = w.P("e_bias_ok");
                    w.Op($"and.pred {biasOk}, %e_row_ok_{i}_{h}, %has_bias");
                    TensorCorePtx.LoadScale(w, w.F($"e_bias_{i}_{h}"), biasOk, "%bias", row);
                }
            }
        }
        for (int j = 0; j < fn; j++)
        {
            for (int e = 0; e < 2; e++)
            {
                string tok = w.R("e_tok"), tokOk = w.P("e_tok_ok"), rowAddr = w.D("e_tok_addr");
                w.Op($"mad.lo.s32 {tok}, %t, 2, {tok0}");
                w.Op($"add.s32 {tok}, {tok}, {8 * j + e}");
                w.Op($"setp.lt.s32 {tokOk}, {tok}, %m");
                w.Op($"mul.wide.s32 {rowAddr}, {tok}, %ldc");
                w.Op($"shl.b64 {rowAddr}, {rowAddr}, 2");
                w.Op($"add.u64 {rowAddr}, {rowAddr}, %out");
                if (epilogue == PtxEpilogue.Dequant)
                    TensorCorePtx.LoadScale(w, aS, tokOk, "%xscale", tok);
                for (int i = 0; i < fm; i++)
                {
                    for (int h = 0; h < 2; h++)
                    {
                        w.Op($"and.pred {okStore}, {tokOk}, %e_row_ok_{i}_{h}");
                        w.Op($"mul.wide.s32 {colOff}, %e_row_{i}_{h}, 4");
                        w.Op($"add.u64 {address}, {rowAddr}, {colOff}");
                        TensorCorePtx.StoreOne(w, epilogue, okStore, $"%acc_{i}_{j}_{2 * h + e}", address, aS, $"%e_wscale_{i}_{h}", $"%e_bias_{i}_{h}");
                    }
                }
            }
        }
        w.Op("ret");

        var text = new StringBuilder();
        text.Append(TensorCorePtx.Header(name, Parameters, tile.Threads, 0));
        text.Append("{\n");
        text.Append(w.Build());
        text.Append("}\n");
        return text.ToString();
    }
}
