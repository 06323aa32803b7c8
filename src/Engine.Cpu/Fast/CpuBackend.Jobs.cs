using System.Runtime.CompilerServices;

namespace GpuCnn.Cpu.Fast;

/// <summary>The parallel jobs of the CPU backend: reusable objects whose fields are set per call (no allocation).</summary>
public sealed unsafe partial class CpuBackend
{
    private readonly ConvForwardJob _convForward;
    private readonly WinogradWeightsJob _winogradWeightsJob;
    private readonly ConvBackwardDataJob _convBackwardData;
    private readonly ConvBackwardFilterJob _convBackwardFilter;
    private readonly GemmJob _gemm;
    private readonly PlaneJob _planes;

    /// <summary>Whether a convolution's column matrix is the input itself (1×1 kernel, stride 1, no padding).</summary>
    private static bool IsPointwise(in Conv2dGeometry g) =>
        g.R == 1 && g.S == 1 && g.StrideH == 1 && g.StrideW == 1 && g.PadH == 0 && g.PadW == 0;

    /// <summary>
    /// A part's column matrix (C·R·S × images·P·Q floats), counted in long: past int's range — a 31 × 31 kernel over
    /// 500 × 500 images of 9 channels makes 2.2·10⁹ — it is refused as the ILGPU backend refuses it, where the int
    /// product had wrapped to a size the job then wrote past.
    /// </summary>
    private static int ScratchLength(long floats) => GeometryChecks.Elements("convolution", "column matrix of one image", floats);

    /// <summary>
    /// Images per product for a layer's forward or backward-data run by GEMM: enough for about 256 columns, where one
    /// image's P·Q is fewer (a narrow product per image spends its time packing the filters and storing edge tiles:
    /// conv1x1s2-64, 49 columns, ran at 10–20 % of the FMA peak), while every worker keeps two parts; 1 for the
    /// per-image route.
    /// </summary>
    private static int ImagesPerProduct(in Conv2dGeometry g, int workers)
    {
        int plane = g.P * g.Q;
        int images = Math.Min((256 + plane - 1) / plane, g.N / (2 * workers));
        return plane >= 256 || (long)images * g.C * g.H * g.W >= 1 << 28 ? 1 : Math.Max(1, images); // the gathers' int offsets
    }

    /// <summary>Columns [chunk] of a GEMM.</summary>
    private sealed class GemmJob(CpuBackend owner) : IParallelJob
    {
        public GemmArgs Args;
        public int Parts;

        public bool AnyWorker => true; // a range of C's columns, with the running worker's packing buffers

        public void Run(int part, int worker)
        {
            int chunk = (Args.N + Parts - 1) / Parts;
            chunk = (chunk + 31) / 32 * 32;
            int first = part * chunk, count = Math.Min(chunk, Args.N - first);
            if (count > 0)
            {
                owner._workers.Gemm(worker).Run(Args.Columns(first, count));
            }
        }
    }

    /// <summary>
    /// y_n (K × P·Q) = W (K × C·R·S) · cols(x_n) + b, one image per part — or, for small images by Winograd or by GEMM,
    /// a few consecutive images per part.
    /// </summary>
    private sealed class ConvForwardJob(CpuBackend owner) : IParallelJob
    {
        private Conv2dGeometry _g;
        private bool _direct, _blocked, _winograd, _imagesPerProduct, _filterVector, _imagesByFilterVectors;
        private int _images = 1, _blockSplits = 1;
        private FusedActivation? _activation;
        private float* _x, _w, _b, _y, _transformed, _packed;

        public bool AnyWorker => true; // part p's images' outputs, in the running worker's scratch

        /// <summary>Floats of scratch each worker needs for one part (<see cref="RunImages"/> reserves them).</summary>
        public int ScratchFloats { get; private set; }

        /// <summary>
        /// Parts of the job set up last: one per image, or per group of small images by Winograd or GEMM, or per block
        /// range of an image vectorised across filters when the batch is smaller than the team.
        /// </summary>
        public int Parts => _filterVector ? _g.N * _blockSplits : (_g.N + _images - 1) / _images;

        /// <summary>
        /// Sets up y = f(conv(x, w) + b); f (the layer's fused activation, or none) is applied to each image's output
        /// while it is still in cache. <paramref name="direct"/> forces the direct kernel where neither the blocked
        /// kernel nor the one vectorised across filters takes the layer.
        /// </summary>
        public void Set(in Conv2dGeometry g, float* x, float* w, float* b, float* y, FusedActivation? activation, bool direct = false)
        {
            // Small planes vectorised across filters, the filters packed in blocks once per call. Where Winograd would
            // run instead but the filters hold a NaN or ±∞ (or, image by image, an image does), the direct route is
            // the one the layer takes with Winograd off — this one where it pays there — so the bits are Off's.
            bool filterVectorsOff = owner.UsesFilterVectors(g, winograd: false);
            bool winograd = owner.UsesWinograd(g);
            _filterVector = owner.UsesFilterVectors(g, winograd);
            _winograd = !_filterVector && winograd;
            if (_winograd)
            {
                _transformed = owner._transformedWeights.Columns(WinogradConvolution.TransformedWeightsLength(g));
                _winograd = owner._winogradWeightsJob.Transform(g, w, _transformed);
                _filterVector = !_winograd && filterVectorsOff;
            }

            _imagesByFilterVectors = _filterVector || (_winograd && filterVectorsOff);
            if (_imagesByFilterVectors)
            {
                _packed = (_winograd ? owner._packedWeights : owner._transformedWeights).Columns(FilterVectorConvolution.PackedWeightsLength(g));
                FilterVectorConvolution.PackWeights(g, owner.Width, w, _packed);
            }

            (_g, _activation) = (g, activation);
            _x = x;
            _w = w;
            _b = b;
            _y = y;
            if (_filterVector)
            {
                // A batch smaller than the team splits each image's blocks of filters between workers (each output is
                // still one worker's sum: the same bits), so that batch-1 inference does not run on one core.
                ScratchFloats = FilterVectorConvolution.ScratchLength(g, owner.Width);
                int workers = owner._workers.Count;
                _blockSplits = g.N >= workers ? 1 : Math.Min(g.K / FilterVectorConvolution.BlockFilters(owner.Width), (workers + g.N - 1) / g.N);
                (_imagesPerProduct, _images, _blocked, _direct) = (false, 1, false, false);
                return;
            }

            _blocked = BlockedConvolution.Suits(g);
            _direct = !_blocked && (direct || DirectConvolution.SuitsForward(g));
            int width = (int)owner.Width;
            ScratchFloats = _imagesByFilterVectors ? FilterVectorConvolution.ScratchLength(g, owner.Width) : _blocked ? BlockedConvolution.ScratchLength(g, width) :
                _direct ? DirectConvolution.ScratchLength(g, width) : IsPointwise(g) ? 0 : ScratchLength((long)g.C * g.R * g.S * g.P * g.Q);
            _images = 1;
            if (_winograd)
            {
                ScratchFloats = Math.Max(ScratchFloats, WinogradConvolution.ScratchLength(g, owner.Width));
                _images = WinogradConvolution.ForwardImages(g, owner.Width);
            }

            // By GEMM: small planes several images to a product (its columns side by side), the product in scratch.
            _imagesPerProduct = false;
            if (!_winograd && !_blocked && !_direct && ImagesPerProduct(g, owner._workers.Count) is > 1 and var images)
            {
                (_images, _imagesPerProduct) = (images, true);
                ScratchFloats = g.K * images * g.P * g.Q;
                foreach (var scratch in owner._scratch)
                {
                    scratch.ImageColumns.Set(g, images, null); // every worker's tables now: parts go to whichever is free
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int worker)
        {
            long pq = (long)_g.P * _g.Q;
            if (_filterVector)
            {
                int n = part / _blockSplits, split = part % _blockSplits, size = FilterVectorConvolution.BlockFilters(owner.Width), blocks = _g.K / size;
                int firstBlock = split * blocks / _blockSplits, endBlock = (split + 1) * blocks / _blockSplits;
                float* y = _y + (n * _g.K * pq);
                FilterVectorConvolution.Forward(_g, owner.Width, _x + ((long)n * _g.C * _g.H * _g.W), _packed, _b, y,
                    owner._scratch[worker].Columns(ScratchFloats), firstBlock, endBlock - firstBlock);
                long offset = firstBlock * size * pq;
                Activate(y + offset, (int)((endBlock - firstBlock) * size * pq));
                return;
            }

            int first = part * _images, count = Math.Min(_images, _g.N - first);
            if (_winograd && WinogradConvolution.Forward(owner.Width, _g, _x + ((long)first * _g.C * _g.H * _g.W), _transformed, _b,
                    _y + (first * _g.K * pq), owner._scratch[worker].Columns(ScratchFloats), count))
            {
                Activate(_y + (first * _g.K * pq), (int)(count * _g.K * pq));
                return;
            }

            if (_imagesPerProduct)
            {
                RunProduct(first, count, worker);
                return;
            }

            // Not by Winograd, or an image of the group holds a NaN or ±∞: image by image, that one directly.
            for (int n = first; n < first + count; n++)
            {
                if (_winograd && count > 1 && WinogradConvolution.Forward(owner.Width, _g, _x + ((long)n * _g.C * _g.H * _g.W), _transformed, _b, _y + (n * _g.K * pq),
                        owner._scratch[worker].Columns(ScratchFloats)))
                {
                    Activate(_y + (n * _g.K * pq), (int)(_g.K * pq));
                    continue;
                }

                RunDirect(n, worker);
            }
        }

        /// <summary>Image n by the kernel chosen for the layer (not Winograd).</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunDirect(int n, int worker)
        {
            int crs = _g.C * _g.R * _g.S, pq = _g.P * _g.Q;
            float* x = _x + (long)n * _g.C * _g.H * _g.W;
            float* y = _y + (long)n * _g.K * pq;
            if (_imagesByFilterVectors)
            {
                FilterVectorConvolution.Forward(_g, owner.Width, x, _packed, _b, y, owner._scratch[worker].Columns(ScratchFloats), 0,
                    _g.K / FilterVectorConvolution.BlockFilters(owner.Width));
                Activate(y, _g.K * pq);
                return;
            }

            if (_blocked)
            {
                float* scratch = owner._scratch[worker].Columns(ScratchFloats);
                BlockedConvolution.Forward(owner.Width, _g, x, _w, _b, y, scratch);
                Activate(y, _g.K * pq);
                return;
            }

            if (_direct)
            {
                float* scratch = owner._scratch[worker].Columns(ScratchFloats);
                DirectConvolution.Forward(owner.Width, _g, x, _w, _b, y, scratch);
                Activate(y, _g.K * pq);
                return;
            }

            float* cols = x;
            if (!IsPointwise(_g))
            {
                cols = owner._scratch[worker].Columns(ScratchFloats);
                Im2Col.Expand(_g, x, cols);
            }

            float beta = 0f;
            if (_b != null)
            {
                for (int k = 0; k < _g.K; k++)
                {
                    new Span<float>(y + (long)k * pq, pq).Fill(_b[k]);
                }

                beta = 1f;
            }

            owner._workers.Gemm(worker).Run(new GemmArgs(false, false, _g.K, pq, crs, 1f, _w, crs, cols, pq, beta, y, pq));
            Activate(y, _g.K * pq);
        }

        /// <summary>
        /// Images first … first + count − 1 as one product W · [cols(x_first) … cols(x_last)] into scratch (K × count·P·Q),
        /// then each image's columns copied to y. The bias is in the product's rows before it (β = 1), as on the
        /// per-image route: each output is the same sums in the same order, the same bits however the images are grouped.
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void RunProduct(int first, int count, int worker)
        {
            int plane = _g.P * _g.Q, columns = count * plane, crs = _g.C * _g.R * _g.S;
            var scratch = owner._scratch[worker];
            float* product = scratch.Columns(ScratchFloats);
            for (int k = 0; _b != null && k < _g.K; k++)
            {
                new Span<float>(product + ((long)k * columns), columns).Fill(_b[k]);
            }

            var source = scratch.ImageColumns;
            source.Set(_g, _images, _x + ((long)first * _g.C * _g.H * _g.W));
            owner._workers.Gemm(worker).Run(new GemmArgs(false, false, _g.K, columns, crs, 1f, _w, crs, null, columns,
                _b != null ? 1f : 0f, product, columns), source);

            float* y = _y + ((long)first * _g.K * plane);
            for (int i = 0; i < count; i++)
            {
                for (int k = 0; k < _g.K; k++)
                {
                    new ReadOnlySpan<float>(product + ((long)k * columns) + (i * plane), plane).CopyTo(new Span<float>(y + (((long)i * _g.K) + k) * plane, plane));
                }
            }

            Activate(y, count * _g.K * plane);
        }

        private void Activate(float* y, int count) => _activation?.Apply(new Span<float>(y, count));
    }

    /// <summary>
    /// The filters' Winograd transform (<see cref="WinogradConvolution.TransformWeights"/>),
    /// a range of six-filter panels per part, across the team when there are enough of them (128 → 128: 0.10 ms on
    /// one thread, 3 % of conv3x3-128's forward).
    /// </summary>
    private sealed class WinogradWeightsJob(CpuBackend owner) : IParallelJob
    {
        private readonly bool[] _finite = new bool[owner._workers.Count];
        private Conv2dGeometry _g;
        private float* _w, _u;
        private int _parts;

        public bool AnyWorker => true;

        /// <summary>Transforms w into u; false when a transformed value is not finite.</summary>
        public bool Transform(in Conv2dGeometry g, float* w, float* u)
        {
            _g = g;
            _w = w;
            _u = u;
            _parts = (long)g.K * g.C >= 4096 ? Math.Min(owner._workers.Count, WinogradConvolution.FilterPanels(g)) : 1;
            owner._workers.Run(this, _parts);
            for (int part = 0; part < _parts; part++)
            {
                if (!_finite[part])
                {
                    return false;
                }
            }

            return true;
        }

        public void Run(int part, int worker)
        {
            int panels = WinogradConvolution.FilterPanels(_g), first = part * panels / _parts, end = (part + 1) * panels / _parts;
            _finite[part] = WinogradConvolution.TransformWeights(_g, _w, _u, first, end - first);
        }
    }

    /// <summary>
    /// dx_n = col2im(Wᵀ · dy_n): the GEMM form of the full convolution of the dilated, padded dy with the rotated
    /// kernel (docs/02-convolution.md), one image per part.
    /// </summary>
    private sealed class ConvBackwardDataJob(CpuBackend owner) : IParallelJob
    {
        private Conv2dGeometry _g;
        private float* _dy, _w, _dx;
        private int _images = 1;

        public bool AnyWorker => true;

        /// <summary>Parts of the job set up last: one per image, or per group of images of small planes.</summary>
        public int Parts => (_g.N + _images - 1) / _images;

        /// <summary>Floats of scratch each worker needs for one part: its column matrix (none for one image of a 1×1 layer).</summary>
        public int ScratchFloats { get; private set; }

        public void Set(in Conv2dGeometry g, float* dy, float* w, float* dx)
        {
            _g = g;
            _dy = dy;
            _w = w;
            _dx = dx;
            _images = ImagesPerProduct(g, owner._workers.Count);
            ScratchFloats = IsPointwise(g) && _images == 1 ? 0 : ScratchLength((long)g.C * g.R * g.S * _images * g.P * g.Q);
        }

        /// <summary>
        /// cols = Wᵀ · [dy_first … dy_last] (C·R·S × images·P·Q) for the part's images, then each image's columns folded
        /// into its dx: small planes several images to a product, as the forward (<see cref="ImagesPerProduct"/>); each
        /// column the same sums in the same order, the same bits however the images are grouped.
        /// </summary>
        public void Run(int part, int worker)
        {
            int crs = _g.C * _g.R * _g.S, pq = _g.P * _g.Q, chw = _g.C * _g.H * _g.W, first = part * _images;
            int count = Math.Min(_images, _g.N - first), columns = count * pq;
            float* dy = _dy + ((long)first * _g.K * pq);
            float* dx = _dx + ((long)first * chw);
            if (IsPointwise(_g) && count == 1)
            {
                owner._workers.Gemm(worker).Run(new GemmArgs(true, false, crs, pq, _g.K, 1f, _w, crs, dy, pq, 0f, dx, pq));
                return;
            }

            var scratch = owner._scratch[worker];
            float* cols = scratch.Columns(ScratchFloats);
            IPanelSource? images = null;
            if (count > 1)
            {
                scratch.ImageRows.Set(dy, pq, (long)_g.K * pq);
                images = scratch.ImageRows;
            }

            owner._workers.Gemm(worker).Run(new GemmArgs(true, false, crs, columns, _g.K, 1f, _w, crs, dy, columns, 0f, cols, columns), images);
            new Span<float>(dx, count * chw).Clear();
            for (int i = 0; i < count; i++)
            {
                Im2Col.Accumulate(_g, cols + (i * pq), dx + ((long)i * chw), columns);
            }
        }
    }

    /// <summary>Part p's partial dW = Σ over its images of dy_n (K × P·Q) · cols(x_n)ᵀ; images split in fixed contiguous ranges.</summary>
    private sealed class ConvBackwardFilterJob(CpuBackend owner) : IParallelJob
    {
        private Conv2dGeometry _g;
        private float* _x, _dy;
        private int _parts;
        private bool _winograd;

        public bool AnyWorker => true; // part p's images sum into part p's own scratch, added in part order afterwards

        public void Set(in Conv2dGeometry g, float* x, float* dy, int parts)
        {
            _g = g;
            _x = x;
            _dy = dy;
            _parts = parts;
            _winograd = owner.UsesWinograd(g, filterGradient: true);
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int worker)
        {
            float* partial = owner._scratch[part].Partial(_g.WeightSize);
            int first = (int)((long)_g.N * part / _parts), last = (int)((long)_g.N * (part + 1) / _parts);
            new Span<float>(partial, _g.WeightSize).Clear();
            if (!_winograd)
            {
                AccumulateDirect(first, last, partial, part, worker);
                return;
            }

            // Winograd's sums stay in the transform domain over the part's images and join dw once at the end; an
            // image holding a NaN or ±∞ (in x or dy) goes straight into dw by the direct kernels instead.
            float* scratch = owner._scratch[part].Winograd(WinogradConvolution.GradientScratchLength(_g));
            int chw = _g.C * _g.H * _g.W, kpq = _g.K * _g.P * _g.Q, group = WinogradConvolution.GradientImages(_g);
            int* images = stackalloc int[group];
            bool any = false;
            for (int n = first; n < last; n += group)
            {
                int count = 0;
                for (int i = n; i < Math.Min(n + group, last); i++)
                {
                    if (WinogradConvolution.GradientInputsFinite(_g, _x + ((long)i * chw), _dy + ((long)i * kpq)))
                    {
                        images[count++] = i;
                    }
                    else
                    {
                        AccumulateDirect(i, i + 1, partial, part, worker);
                    }
                }

                if (count > 0)
                {
                    WinogradConvolution.AccumulateGradient(owner._workers.Gemm(worker), _g, _x, _dy, images, count, !any, scratch);
                    any = true;
                }
            }

            if (any)
            {
                WinogradConvolution.AddGradient(_g, scratch, partial);
            }
        }

        /// <summary>Images [first, last) added into partial by the direct kernels.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void AccumulateDirect(int first, int last, float* partial, int part, int worker)
        {
            int crs = _g.C * _g.R * _g.S, pq = _g.P * _g.Q, chw = _g.C * _g.H * _g.W;
            if (FilterGradientByFilters.Preferred(_g))
            {
                float* outer = owner._scratch[part].Columns(FilterGradientByFilters.ScratchLength(_g, owner.Width));
                FilterGradientByFilters.Accumulate(owner.Width, _g, _x + (long)first * chw, _dy + (long)first * _g.K * pq, last - first, partial, outer);
                return;
            }

            int group = BlockedConvolution.FilterGradientGroup(_g, (int)owner.Width);
            bool checkFinite = BlockedConvolution.ReadsPastOutputs(_g, (int)owner.Width);
            for (int n = first; n < last; n++)
            {
                float* x = _x + (long)n * chw;
                int count = Math.Min(group, last - n);
                if (count > 0 && (!checkFinite || Simd.AllFinite(x, (long)count * chw)))
                {
                    // A group of images summed in the blocked kernel's accumulators; n moves past the group.
                    float* scratch = owner._scratch[part].Columns(BlockedConvolution.FilterGradientScratch(_g, (int)owner.Width, count));
                    BlockedConvolution.AccumulateFilterGradient(owner.Width, _g, x, _dy + (long)n * _g.K * pq, count, partial, scratch);
                    n += count - 1;
                    continue;
                }

                if (DirectConvolution.SuitsFilterGradient(_g))
                {
                    float* scratch = owner._scratch[part].Columns(DirectConvolution.ScratchLength(_g, (int)owner.Width));
                    DirectConvolution.AccumulateFilterGradient(owner.Width, _g, x, _dy + (long)n * _g.K * pq, partial, scratch);
                    continue;
                }

                // dW (K × C·R·S) += dy_n (K × P·Q) · colsᵀ (P·Q × C·R·S), with colsᵀ packed straight from the image
                // (implicit im2col): a strided pack of cols was 2× slower on 3×3 layers, and an explicit colsᵀ
                // costs a pass over memory. Small planes stack several images along the depth (up to the GEMM's
                // 256-deep blocks), their dy rows side by side: one product then adds into dW once per group instead of
                // once per image (a 7×7 plane is only 49 deep).
                int stacked = Math.Clamp(256 / pq, 1, last - n);
                float* dy = _dy + (long)n * _g.K * pq;
                if (stacked > 1)
                {
                    float* side = owner._scratch[part].Columns(_g.K * stacked * pq);
                    for (int k = 0; k < _g.K; k++)
                    {
                        for (int i = 0; i < stacked; i++)
                        {
                            new Span<float>(dy + ((long)((i * _g.K) + k) * pq), pq).CopyTo(new Span<float>(side + ((long)((k * stacked) + i) * pq), pq));
                        }
                    }

                    dy = side;
                }

                var columns = owner._scratch[part].TransposedColumns;
                columns.Set(_g, x);
                owner._workers.Gemm(worker).Run(new GemmArgs(false, false, _g.K, crs, stacked * pq, 1f, dy, stacked * pq, null, crs, 1f, partial, crs), columns);
                n += stacked - 1;
            }
        }
    }

    /// <summary>Pooling over planes (N·C of them), a contiguous range of planes per part.</summary>
    private sealed class PlaneJob(CpuBackend owner) : IParallelJob
    {
        public enum Op
        {
            MaxForward,
            MaxBackward,
            AvgForward,
            AvgBackward,
        }

        private Op _op;
        private Pool2dGeometry _g;
        private float* _in, _out;
        private int* _switches;
        private long _badSwitch;

        /// <summary>After a max-pooling backward: the first switch (flat index) outside its plane, which was skipped; or −1.</summary>
        public long BadSwitch => _badSwitch == long.MaxValue ? -1 : _badSwitch;

        public bool AnyWorker => true;

        public int Parts { get; set; }

        /// <summary>Floats of scratch a worker needs for the operation set up last: a plane laid out by <see cref="PoolWindows"/>, or none.</summary>
        public int ScratchFloats => Pool2x2.Suits(_g) ? 0 : _op switch
        {
            Op.MaxForward when PoolWindows.Suits(_g, owner.Width) => PoolWindows.ScratchLength(_g),
            Op.AvgForward when PoolWindows.SuitsAverage(_g, owner.Width) => PoolWindows.ScratchLength(_g),
            Op.AvgBackward when PoolWindows.SuitsAverageBackward(_g, owner.Width) => PoolWindows.AverageBackwardScratchLength(_g),
            _ => 0,
        };

        public void Set(Op op, in Pool2dGeometry g, float* input, float* output, int* switches)
        {
            _op = op;
            _g = g;
            _in = input;
            _out = output;
            _switches = switches;
            _badSwitch = long.MaxValue;
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public void Run(int part, int worker)
        {
            int planes = _g.N * _g.C;
            int first = (int)((long)planes * part / Parts), last = (int)((long)planes * (part + 1) / Parts);
            int hw = _g.H * _g.W, pq = _g.P * _g.Q;
            if (_op is Op.AvgForward or Op.AvgBackward && _g.IsGlobal)
            {
                if (_op == Op.AvgForward)
                {
                    GlobalAverage(_in, _out, first, last, hw);
                }
                else
                {
                    GlobalAverageBackward(_in, _out, first, last, hw);
                }

                return;
            }

            for (int plane = first; plane < last; plane++)
            {
                switch (_op)
                {
                    case Op.MaxForward when Pool2x2.Suits(_g):
                        Pool2x2.MaxPlane(owner.Width, _in + (long)plane * hw, _out + (long)plane * pq, _switches + (long)plane * pq, _g.W, _g.P, _g.Q);
                        break;
                    case Op.AvgForward when Pool2x2.Suits(_g):
                        Pool2x2.AveragePlane(owner.Width, _in + (long)plane * hw, _out + (long)plane * pq, _g.W, _g.P, _g.Q);
                        break;
                    case Op.AvgBackward when Pool2x2.Suits(_g):
                        Pool2x2.AverageBackwardPlane(owner.Width, _in + (long)plane * pq, _out + (long)plane * hw, _g.H, _g.W, _g.P, _g.Q);
                        break;
                    case Op.MaxForward when PoolWindows.Suits(_g, owner.Width):
                        PoolWindows.MaxPlane(_g, _in + (long)plane * hw, _out + (long)plane * pq, _switches + (long)plane * pq,
                            owner._scratch[worker].Columns(ScratchFloats));
                        break;
                    case Op.AvgBackward when PoolWindows.SuitsAverageBackward(_g, owner.Width):
                        PoolWindows.AverageBackwardPlane(_g, _in + (long)plane * pq, _out + (long)plane * hw,
                            owner._scratch[worker].Columns(ScratchFloats));
                        break;
                    case Op.AvgForward when PoolWindows.SuitsAverage(_g, owner.Width):
                        PoolWindows.AveragePlane(_g, _in + (long)plane * hw, _out + (long)plane * pq, owner._scratch[worker].Columns(ScratchFloats));
                        break;
                    case Op.MaxForward: MaxForward(_in + (long)plane * hw, _out + (long)plane * pq, _switches + (long)plane * pq); break;
                    case Op.MaxBackward: MaxBackward(plane, _in + (long)plane * pq, _switches + (long)plane * pq, _out + (long)plane * hw); break;
                    case Op.AvgForward: AvgForward(_in + (long)plane * hw, _out + (long)plane * pq); break;
                    default: AvgBackward(_in + (long)plane * pq, _out + (long)plane * hw); break;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]

        private void MaxForward(float* x, float* y, int* switches)
        {
            // Geometry in locals: P and Q are computed properties (a division each), and the JIT cannot keep fields
            // in registers across stores through pointers.
            int outH = _g.P, outW = _g.Q, height = _g.H, width = _g.W, kh = _g.KernelH, kw = _g.KernelW;
            int sh = _g.StrideH, sw = _g.StrideW, ph = _g.PadH, pw = _g.PadW;
            for (int p = 0; p < outH; p++)
            {
                for (int q = 0; q < outW; q++)
                {
                    float best = float.NegativeInfinity;
                    int at = -1;
                    for (int r = 0; r < kh; r++)
                    {
                        int h = p * sh + r - ph;
                        if ((uint)h >= (uint)height)
                        {
                            continue;
                        }

                        for (int s = 0; s < kw; s++)
                        {
                            int w = q * sw + s - pw;
                            if ((uint)w >= (uint)width)
                            {
                                continue;
                            }

                            Pool2x2.TakeScalar(ref best, ref at, x[h * width + w], h * width + w);
                        }
                    }

                    y[p * outW + q] = best;
                    switches[p * outW + q] = at;
                }
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void MaxBackward(int plane, float* dy, int* switches, float* dx)
        {
            int outputs = _g.P * _g.Q, planeSize = _g.H * _g.W;
            new Span<float>(dx, planeSize).Clear();
            for (int o = 0; o < outputs; o++)
            {
                int at = switches[o];
                if ((uint)at >= (uint)planeSize)
                {
                    // Not from a forward of this geometry: written through, it would land in another plane or outside dx.
                    KeepFirstBadSwitch((long)plane * outputs + o);
                    continue;
                }

                dx[at] += dy[o];
            }
        }

        /// <summary>Keeps the smallest bad switch index any worker saw, so that the error names the same one every run.</summary>
        private void KeepFirstBadSwitch(long index)
        {
            long seen;
            while (index < (seen = Volatile.Read(ref _badSwitch)) && Interlocked.CompareExchange(ref _badSwitch, index, seen) != seen)
            {
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]

        private void AvgForward(float* x, float* y)
        {
            int outH = _g.P, outW = _g.Q, height = _g.H, width = _g.W, kh = _g.KernelH, kw = _g.KernelW;
            int sh = _g.StrideH, sw = _g.StrideW, ph = _g.PadH, pw = _g.PadW;
            float area = kh * kw; // divided by, as PyTorch and the reference do: times 1/9 is an ulp off 17/9
            bool uniform = _g.UniformWindowArea; // else ceil mode's cut windows or uncounted padding: each window's own divisor
            for (int p = 0; p < outH; p++)
            {
                for (int q = 0; q < outW; q++)
                {
                    float sum = 0f;
                    for (int r = 0; r < kh; r++)
                    {
                        int h = p * sh + r - ph;
                        for (int s = 0; (uint)h < (uint)height && s < kw; s++)
                        {
                            int w = q * sw + s - pw;
                            if ((uint)w < (uint)width)
                            {
                                sum += x[h * width + w];
                            }
                        }
                    }

                    y[p * outW + q] = sum / (uniform ? area : _g.WindowArea(p, q));
                }
            }
        }

        /// <summary>
        /// y[plane] = the mean of each plane (<see cref="Pool2dGeometry.IsGlobal"/>): its sum in double in row-major
        /// order, rounded, divided — the reference's bits — four planes at a time, four independent sums, where one
        /// plane at a time waited on each add (a ResNet-8 step spent 0.16 ms averaging its last 7×7 planes).
        /// </summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void GlobalAverage(float* x, float* y, int first, int last, int hw)
        {
            float area = _g.KernelH * _g.KernelW;
            int plane = first;
            for (; plane + 4 <= last; plane += 4)
            {
                float* x0 = x + ((long)plane * hw);
                double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
                for (int i = 0; i < hw; i++)
                {
                    s0 += x0[i];
                    s1 += x0[hw + i];
                    s2 += x0[(2 * hw) + i];
                    s3 += x0[(3 * hw) + i];
                }

                y[plane] = (float)s0 / area;
                y[plane + 1] = (float)s1 / area;
                y[plane + 2] = (float)s2 / area;
                y[plane + 3] = (float)s3 / area;
            }

            for (; plane < last; plane++)
            {
                float* x0 = x + ((long)plane * hw);
                double sum = 0;
                for (int i = 0; i < hw; i++)
                {
                    sum += x0[i];
                }

                y[plane] = (float)sum / area;
            }
        }

        /// <summary>dx = dy·(1/hw) over each whole plane: <see cref="AvgBackward"/>'s 0 + share, written as one fill.</summary>
        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void GlobalAverageBackward(float* dy, float* dx, int first, int last, int hw)
        {
            float area = _g.KernelH * _g.KernelW;
            for (int plane = first; plane < last; plane++)
            {
                new Span<float>(dx + ((long)plane * hw), hw).Fill(0f + (dy[plane] / area)); // 0 + share: −0 becomes +0, as there
            }
        }

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        private void AvgBackward(float* dy, float* dx)
        {
            int outH = _g.P, outW = _g.Q, height = _g.H, width = _g.W, kh = _g.KernelH, kw = _g.KernelW;
            int sh = _g.StrideH, sw = _g.StrideW, ph = _g.PadH, pw = _g.PadW;
            float area = kh * kw;
            bool uniform = _g.UniformWindowArea;
            new Span<float>(dx, height * width).Clear();
            for (int p = 0; p < outH; p++)
            {
                for (int q = 0; q < outW; q++)
                {
                    float share = dy[p * outW + q] / (uniform ? area : _g.WindowArea(p, q));
                    for (int r = 0; r < kh; r++)
                    {
                        int h = p * sh + r - ph;
                        for (int s = 0; (uint)h < (uint)height && s < kw; s++)
                        {
                            int w = q * sw + s - pw;
                            if ((uint)w < (uint)width)
                            {
                                dx[h * width + w] += share;
                            }
                        }
                    }
                }
            }
        }
    }
}
