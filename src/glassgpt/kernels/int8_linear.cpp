// int8 x int8 linear layer for decoding on x86 CPUs with AVX2 (glassgpt.quantize, method "avx2").
//
// y[m, n] = sx[m] * sw[n] * sum_k xq[m, k] * wq[n, k]  (+ bias[n])
//
// wq: the layer's weights as int8, one symmetric scale sw[n] per output row (made once at load).
// xq: each input row rounded to int8 with its own symmetric scale sx[m] (made here, per call).
// Decoding one token reads every weight once and does 1 multiply-add with it, so the loop is
// built to stream weights at memory speed: 32 weights per load and per multiply (`maddubs`, as
// llama.cpp does). Each weight row is read once for all input rows (in registers for four at a
// time), so batch 8 reads no more weights than batch 1.
//
// `block_step` runs a whole GPT-2 or Llama block for one new token on these layers
// (norms, rotary positions, cache write, one query's attention, residuals), so a decoding step
// makes one call per block instead of ~20 framework calls, which on this CPU cost as much as
// reading the weights. The call is one parallel region: the threads split each layer's rows and
// meet at barriers between steps, where starting a region (`at::parallel_for`) per layer and for
// the attention made GPT-2 small's decoding ~10% slower (and the demo model's ~13%).

// The few headers this file needs, not <torch/extension.h> (all of PyTorch's C++ API): the first
// `--quantize int8` run compiles this file, 14 s instead of 27 s here.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/csrc/utils/pybind.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Round `x` (K floats) to int8 with one symmetric scale (max |x| -> 127), and |q| for `dot_rows`;
// returns the scale. Rounds to nearest, ties to even (the CPU's default mode), like std::nearbyint.
float quantize_row(const float* x, int8_t* q, int8_t* abs_q, int64_t K) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 amax8 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 8 <= K; k += 8) amax8 = _mm256_max_ps(amax8, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + k)));
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, amax8);
    float amax = 0.0f;
    for (float lane : lanes) amax = std::fmax(amax, lane);
    for (; k < K; ++k) amax = std::fmax(amax, std::fabs(x[k]));
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    const float inverse = 1.0f / scale;
    const __m256 inv8 = _mm256_set1_ps(inverse);
    // 32 floats -> 4 x 8 int32 -> packs (per 128-bit lane) -> one permute back into order.
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (k = 0; k + 32 <= K; k += 32) {
        const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k), inv8));
        const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 8), inv8));
        const __m256i c = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 16), inv8));
        const __m256i d = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + k + 24), inv8));
        const __m256i packed = _mm256_permutevar8x32_epi32(
            _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d)), order);
        _mm256_storeu_si256((__m256i*)(q + k), packed);
        _mm256_storeu_si256((__m256i*)(abs_q + k), _mm256_abs_epi8(packed));
    }
    for (; k < K; ++k) {
        q[k] = static_cast<int8_t>(std::nearbyint(x[k] * inverse));
        abs_q[k] = static_cast<int8_t>(std::abs(q[k]));
    }
    return scale;
}

inline int32_t sum_lanes(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

// R input rows times one weight row: R dot products of K int8 pairs, each weight load shared by
// the R rows. `maddubs` multiplies 32 pairs into 16 int16 pair sums but needs its first operand
// unsigned, so it gets |x| and w with x's sign (|x| * |w| <= 127 * 127: the pair sums, at most
// 2 * 16129, never saturate); `madd` with ones widens them to 8 int32 lanes.
template <int R>
void dot_rows(const int8_t* w, const int8_t* x, const int8_t* abs_x, int64_t K, int32_t* out) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_si256();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m256i wv = _mm256_loadu_si256((const __m256i*)(w + k));
        for (int r = 0; r < R; ++r) {
            const __m256i xv = _mm256_loadu_si256((const __m256i*)(x + r * K + k));
            const __m256i ax = _mm256_loadu_si256((const __m256i*)(abs_x + r * K + k));
            const __m256i pairs = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wv, xv));
            acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(pairs, ones));
        }
    }
    for (int r = 0; r < R; ++r) {
        int32_t sum = sum_lanes(acc[r]);
        for (int64_t j = k; j < K; ++j) sum += static_cast<int32_t>(x[r * K + j]) * static_cast<int32_t>(w[j]);
        out[r] = sum;
    }
}

// e^x for 8 floats (Cephes' expf: x = n ln 2 + r, a degree-5 polynomial for e^r, 2^n from the
// exponent bits; within ~2 float ulps of std::exp over [-88, 88], and x is clamped to that range).
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln 2 in two parts, so r stays exact
    x = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, x, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i two_n = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(two_n));
}

// GELU with the tanh approximation (GPT-2's), in place on y[0..n): 0.5 v (1 + tanh(u)) with
// u = sqrt(2/pi) (v + 0.044715 v^3), written as v / (1 + e^(-2u)), the same function.
void gelu_tanh(float* y, int64_t n) {
    const float c = 0.7978845608028654f;  // sqrt(2 / pi)
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(y + i);
        const __m256 u = _mm256_mul_ps(_mm256_set1_ps(c),
                                       _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), v), _mm256_mul_ps(v, v), v));
        const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), u));
        _mm256_storeu_ps(y + i, _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e)));
    }
    for (; i < n; ++i) {
        const float v = y[i];
        y[i] = 0.5f * v * (1.0f + std::tanh(c * (v + 0.044715f * v * v * v)));
    }
}

// Output rows n0..n1 of Y[m, :] = x row m (int8 xq, scale x_scale[m]) times W^T, scaled per row
// (+ bias, then GELU): one thread's share of a layer.
void int8_row_range(const int8_t* X, const int8_t* AX, const float* x_scale, int64_t M, int64_t K,
                    const int8_t* W, const float* SW, const float* B, int64_t N, float* Y, bool gelu, int64_t n0,
                    int64_t n1) {
    int32_t dots[4];
    for (int64_t n = n0; n < n1; ++n) {
        const int8_t* w = W + n * K;
        for (int64_t m = 0; m < M; m += 4) {  // input rows four at a time (then 3, 2 or 1)
            const int64_t r = std::min<int64_t>(4, M - m);
            const int8_t* x = X + m * K;
            const int8_t* ax = AX + m * K;
            if (r == 4) dot_rows<4>(w, x, ax, K, dots);
            else if (r == 3) dot_rows<3>(w, x, ax, K, dots);
            else if (r == 2) dot_rows<2>(w, x, ax, K, dots);
            else dot_rows<1>(w, x, ax, K, dots);
            for (int64_t j = 0; j < r; ++j) {
                const float v = static_cast<float>(dots[j]) * x_scale[m + j] * SW[n];
                Y[(m + j) * N + n] = B ? v + B[n] : v;
            }
        }
    }
    if (gelu) {
        for (int64_t m = 0; m < M; ++m) gelu_tanh(Y + m * N + n0, n1 - n0);
    }
}

// All output rows, the threads splitting them; 16 rows is the least worth a thread's start.
void int8_rows(const int8_t* X, const int8_t* AX, const float* x_scale, int64_t M, int64_t K, const int8_t* W,
               const float* SW, const float* B, int64_t N, float* Y, bool gelu) {
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
        int8_row_range(X, AX, x_scale, M, K, W, SW, B, N, Y, gelu, n0, n1);
    });
}

// RMSNorm of one row x (D) into y, with gain w (Llama's norm).
void rms_norm_row(const float* x, const float* w, int64_t D, float eps, float* y) {
    double squares = 0.0;
    for (int64_t i = 0; i < D; ++i) squares += static_cast<double>(x[i]) * x[i];
    const float inverse = 1.0f / std::sqrt(static_cast<float>(squares / D) + eps);
    for (int64_t i = 0; i < D; ++i) y[i] = x[i] * inverse * w[i];
}

// Rotary positions in place on `heads` heads of x (heads, Dh), Llama's "rotate half" layout:
// each pair (x[i], x[i + Dh/2]) turned by this position's angle (cos, sin: Dh/2 each).
void rotate_half(float* x, int64_t heads, int64_t Dh, const float* cos, const float* sin) {
    const int64_t half = Dh / 2;
    for (int64_t h = 0; h < heads; ++h) {
        float* a = x + h * Dh;
        for (int64_t i = 0; i < half; ++i) {
            const float x1 = a[i], x2 = a[i + half];
            a[i] = x1 * cos[i] - x2 * sin[i];
            a[i + half] = x2 * cos[i] + x1 * sin[i];
        }
    }
}

// LayerNorm of one row x (D) into y, with gain w and bias b (GPT-2's norm).
void layer_norm_row(const float* x, const float* w, const float* b, int64_t D, float eps, float* y) {
    double sum = 0.0, squares = 0.0;
    for (int64_t i = 0; i < D; ++i) sum += x[i];
    const float mean = static_cast<float>(sum / D);
    for (int64_t i = 0; i < D; ++i) squares += (x[i] - mean) * (x[i] - mean);
    const float inverse = 1.0f / std::sqrt(static_cast<float>(squares / D) + eps);
    for (int64_t i = 0; i < D; ++i) y[i] = (x[i] - mean) * inverse * w[i] + b[i];
}

// One query head h over the first `length` cached positions: softmax(q.k / sqrt(Dh)) v.
// q, y: (H, Dh); keys, values: (K, L, Dh), each head's rows contiguous.
// With K < H key/value heads (grouped-query attention), query head h reads kv head h / (H / K).
void attend(const float* q, const float* keys, const float* values, int64_t H, int64_t K, int64_t L, int64_t Dh,
            int64_t length, int64_t h, float* y) {
    const float scale = 1.0f / std::sqrt(static_cast<float>(Dh));
    std::vector<float> p(length);
    const float* qh = q + h * Dh;
    const float* kh = keys + (h / (H / K)) * L * Dh;
    const float* vh = values + (h / (H / K)) * L * Dh;
    float best = -INFINITY;
    for (int64_t t = 0; t < length; ++t) {
        float dot = 0.0f;
        for (int64_t d = 0; d < Dh; ++d) dot += qh[d] * kh[t * Dh + d];
        p[t] = dot * scale;
        best = std::fmax(best, p[t]);
    }
    float total = 0.0f;
    for (int64_t t = 0; t < length; ++t) total += (p[t] = std::exp(p[t] - best));
    float* yh = y + h * Dh;
    for (int64_t d = 0; d < Dh; ++d) yh[d] = 0.0f;
    for (int64_t t = 0; t < length; ++t) {
        const float weight = p[t] / total;
        for (int64_t d = 0; d < Dh; ++d) yh[d] += weight * vh[t * Dh + d];
    }
}

const float* floats(const at::Tensor& t, int64_t n, const char* what) {
    TORCH_CHECK(t.scalar_type() == at::kFloat && t.is_contiguous() && t.numel() == n,
                "block step: ", what, " must be ", n, " contiguous float32 values");
    return t.data_ptr<float>();
}

// An int8 layer's (weight, scale, bias) as raw pointers, checked against its shape (N, K).
struct Int8Layer {
    const int8_t* w;
    const float* scale;
    const float* bias;
    int64_t N, K;
    Int8Layer(const at::Tensor& weight, const at::Tensor& s, const at::Tensor& b, int64_t n, int64_t k,
              const char* what)
        : scale(floats(s, n, what)), bias(b.defined() ? floats(b, n, what) : nullptr), N(n), K(k) {
        TORCH_CHECK(weight.scalar_type() == at::kChar && weight.is_contiguous() && weight.size(0) == n &&
                    weight.size(1) == k, "block step: ", what, " weight must be int8 (", n, ", ", k, ")");
        w = weight.data_ptr<int8_t>();
    }
};

}  // namespace

// One new token through one block at batch 1, all in C++: x + attn(norm1(x)), then
// + mlp(norm2(x)); this position's key and value are written to the cache at `position`. The same
// math as glassgpt.model.Block with int8 linears, without the ~20 framework calls per layer that
// cost a decoding step as much as its weights. Two kinds of block, told apart by `cos`/`sin`:
// - GPT-2's (no tables): LayerNorm (norms: ln1 w, b, ln2 w, b), biases (linears: weight, scale,
//   bias for qkv, out, up, down), GELU MLP;
// - Llama's (the model's (context, Dh/2) rotary tables): RMSNorm (norms: two weights), rotary
//   positions, no biases (linears: weight, scale for qkv, out, gate_up, down), SwiGLU MLP.
// Both: K <= H key/value heads (grouped-query attention), cache (1, K, L, Dh).
at::Tensor block_step(const at::Tensor& x, const std::vector<at::Tensor>& norms,
                      const std::vector<at::Tensor>& linears, at::Tensor keys, at::Tensor values,
                      const c10::optional<at::Tensor>& cos, const c10::optional<at::Tensor>& sin,
                      int64_t position, int64_t n_head, double eps) {
    const bool llama = cos.has_value();
    const size_t per_layer = llama ? 2 : 3;  // weight, scale (, bias)
    TORCH_CHECK(norms.size() == (llama ? 2u : 4u) && linears.size() == 4 * per_layer,
                "block_step: ", llama ? "2 norm and 8" : "4 norm and 12", " linear tensors");
    const int64_t D = x.numel(), H = n_head, K = keys.size(1), L = keys.size(2), Dh = keys.size(3);
    TORCH_CHECK(x.scalar_type() == at::kFloat && K >= 1 && H % K == 0,
                "block_step: x must be float32, query heads a multiple of key/value heads");
    TORCH_CHECK(keys.dim() == 4 && keys.size(0) == 1 && keys.is_contiguous() && values.sizes() == keys.sizes() &&
                values.is_contiguous() && keys.scalar_type() == at::kFloat &&
                values.scalar_type() == at::kFloat,
                "block_step: the cache must be contiguous float32 (1, K, L, Dh)");
    TORCH_CHECK(position >= 0 && position < L, "block_step: position ", position, " outside the cache");
    if (llama) {
        TORCH_CHECK(sin.has_value() && Dh % 2 == 0 && position < cos->size(0) && cos->size(1) == Dh / 2 &&
                    cos->is_contiguous() && sin->sizes() == cos->sizes() && sin->is_contiguous() &&
                    cos->scalar_type() == at::kFloat && sin->scalar_type() == at::kFloat,
                    "block_step: rotary tables must be float32 (context, Dh/2) covering position ", position);
    }
    const at::Tensor none;
    auto layer = [&](size_t i, int64_t n, int64_t k, const char* what) {
        const size_t at = i * per_layer;
        return Int8Layer(linears[at], linears[at + 1], llama ? none : linears[at + 2], n, k, what);
    };
    const int64_t up_rows = linears[2 * per_layer].size(0), F = llama ? up_rows / 2 : up_rows;
    const Int8Layer qkv = layer(0, (H + 2 * K) * Dh, D, "qkv");
    const Int8Layer out = layer(1, D, H * Dh, "out");
    const Int8Layer up = layer(2, up_rows, D, llama ? "gate_up" : "up");
    const Int8Layer down = layer(3, D, F, "down");
    // Every tensor is checked here, before the parallel region (an error thrown inside one would
    // end the process): norm gains (and LayerNorm's biases) as plain pointers.
    std::vector<const float*> gains;
    for (const at::Tensor& t : norms) gains.push_back(floats(t, D, "norm weight"));
    auto norm = [&](int which, const float* in, float* result) {
        if (llama) {
            rms_norm_row(in, gains[which], D, eps, result);
        } else {
            layer_norm_row(in, gains[2 * which], gains[2 * which + 1], D, eps, result);
        }
    };
    at::Tensor result = x.contiguous().clone();
    float* h = result.data_ptr<float>();
    const int64_t widest = std::max({D, H * Dh, F});
    std::vector<float> normed(D), projected((H + 2 * K) * Dh), mixed(H * Dh), hidden(up_rows);
    std::vector<int8_t> xq(widest), abs_xq(widest);
    float x_scale = 1.0f;
    float* K_ = keys.data_ptr<float>();
    float* V_ = values.data_ptr<float>();
    const float* rot_cos = llama ? cos->data_ptr<float>() + position * (Dh / 2) : nullptr;
    const float* rot_sin = llama ? sin->data_ptr<float>() + position * (Dh / 2) : nullptr;
    // One parallel region for the whole block: the threads split each layer's output rows and the
    // attention's heads, and meet at a barrier between steps (a barrier in a running region costs
    // less than starting a region for each layer). `single` marks the short serial steps.
    const int threads = at::get_num_threads();
#pragma omp parallel num_threads(threads)
    {
        auto rows = [&](const Int8Layer& layer, float* y, bool gelu) {  // y = layer(xq), 16 rows a chunk
#pragma omp for schedule(static)
            for (int64_t chunk = 0; chunk < (layer.N + 15) / 16; ++chunk) {
                int8_row_range(xq.data(), abs_xq.data(), &x_scale, 1, layer.K, layer.w, layer.scale, layer.bias,
                               layer.N, y, gelu, chunk * 16, std::min(layer.N, chunk * 16 + 16));
            }
        };
#pragma omp single
        {
            norm(0, h, normed.data());
            x_scale = quantize_row(normed.data(), xq.data(), abs_xq.data(), D);
        }
        rows(qkv, projected.data(), false);  // q (H, Dh), then k (K, Dh), then v (K, Dh)
#pragma omp single
        {
            if (llama) rotate_half(projected.data(), H + K, Dh, rot_cos, rot_sin);  // queries and keys
            for (int64_t head = 0; head < K; ++head) {
                std::copy_n(projected.data() + (H + head) * Dh, Dh, K_ + (head * L + position) * Dh);
                std::copy_n(projected.data() + (H + K + head) * Dh, Dh, V_ + (head * L + position) * Dh);
            }
        }
#pragma omp for schedule(static)
        for (int64_t head = 0; head < H; ++head) {
            attend(projected.data(), K_, V_, H, K, L, Dh, position + 1, head, mixed.data());
        }
#pragma omp single
        x_scale = quantize_row(mixed.data(), xq.data(), abs_xq.data(), H * Dh);
        rows(out, normed.data(), false);
#pragma omp single
        {
            for (int64_t i = 0; i < D; ++i) h[i] += normed[i];
            norm(1, h, normed.data());
            x_scale = quantize_row(normed.data(), xq.data(), abs_xq.data(), D);
        }
        rows(up, hidden.data(), /*gelu=*/!llama);  // GPT-2: gelu(up); Llama: gate (F), then up (F)
#pragma omp single
        {
            if (llama) {
                for (int64_t i = 0; i < F; ++i) {
                    const float gate = hidden[i];
                    hidden[i] = gate / (1.0f + std::exp(-gate)) * hidden[F + i];  // silu(gate) * up
                }
            }
            x_scale = quantize_row(hidden.data(), xq.data(), abs_xq.data(), F);
        }
        rows(down, normed.data(), false);
    }
    for (int64_t i = 0; i < D; ++i) h[i] += normed[i];
    return result;
}

// `gelu`: apply GPT-2's GELU to the result (each thread to its own outputs, still in its cache),
// which saves the MLP a separate pass over its hidden activations.
at::Tensor int8_linear(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& weight_scale,
                       const c10::optional<at::Tensor>& bias, bool gelu) {
    TORCH_CHECK(x.scalar_type() == at::kFloat, "int8_linear: input must be float32");
    TORCH_CHECK(weight.scalar_type() == at::kChar && weight.dim() == 2 && weight.is_contiguous(),
                "int8_linear: weight must be a contiguous 2-D int8 tensor");
    const int64_t N = weight.size(0), K = weight.size(1);
    TORCH_CHECK(x.size(-1) == K, "int8_linear: input has ", x.size(-1), " features, the weight ", K);
    TORCH_CHECK(weight_scale.scalar_type() == at::kFloat && weight_scale.numel() == N &&
                weight_scale.is_contiguous(), "int8_linear: one float32 scale per output row");
    const at::Tensor rows = x.reshape({-1, K}).contiguous();
    const int64_t M = rows.size(0);
    std::vector<int8_t> xq(M * K), abs_xq(M * K);
    std::vector<float> x_scale(M);
    for (int64_t m = 0; m < M; ++m) {
        x_scale[m] = quantize_row(rows.data_ptr<float>() + m * K, xq.data() + m * K, abs_xq.data() + m * K, K);
    }
    at::Tensor y = at::empty({M, N}, x.options());
    const int8_t* W = weight.data_ptr<int8_t>();
    const int8_t* X = xq.data();
    const int8_t* AX = abs_xq.data();
    const float* SW = weight_scale.data_ptr<float>();
    const float* B = nullptr;
    if (bias.has_value()) {
        TORCH_CHECK(bias->scalar_type() == at::kFloat && bias->numel() == N && bias->is_contiguous(),
                    "int8_linear: bias must be float32 with one value per output row");
        B = bias->data_ptr<float>();
    }
    int8_rows(X, AX, x_scale.data(), M, K, W, SW, B, N, y.data_ptr<float>(), gelu);
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = N;
    return y.view(shape);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("int8_linear", &int8_linear, "int8 x int8 linear layer (AVX2), per-row scales, optionally GELU",
          py::arg("x"), py::arg("weight"), py::arg("weight_scale"), py::arg("bias"), py::arg("gelu") = false);
    m.def("block_step", &block_step, "one token through one int8 GPT-2 or Llama block, KV cache written",
          py::arg("x"), py::arg("norms"), py::arg("linears"), py::arg("keys"), py::arg("values"), py::arg("cos"),
          py::arg("sin"), py::arg("position"), py::arg("n_head"), py::arg("eps"));
}
