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

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace {

// Round `x` (K floats) to int8 with one symmetric scale (max |x| -> 127); returns the scale.
float quantize_row(const float* x, int8_t* q, int64_t K) {
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(x[k]));
    const float scale = amax > 0.0f ? amax / 127.0f : 1.0f;
    const float inverse = 1.0f / scale;
    for (int64_t k = 0; k < K; ++k) q[k] = static_cast<int8_t>(std::nearbyint(x[k] * inverse));
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

}  // namespace

// `gelu`: apply GPT-2's GELU to the result (each thread to its own outputs, still in its cache),
// which saves the MLP a separate pass over its hidden activations.
torch::Tensor int8_linear(const torch::Tensor& x, const torch::Tensor& weight, const torch::Tensor& weight_scale,
                          const c10::optional<torch::Tensor>& bias, bool gelu) {
    TORCH_CHECK(x.scalar_type() == torch::kFloat32, "int8_linear: input must be float32");
    TORCH_CHECK(weight.scalar_type() == torch::kInt8 && weight.dim() == 2 && weight.is_contiguous(),
                "int8_linear: weight must be a contiguous 2-D int8 tensor");
    const int64_t N = weight.size(0), K = weight.size(1);
    TORCH_CHECK(x.size(-1) == K, "int8_linear: input has ", x.size(-1), " features, the weight ", K);
    TORCH_CHECK(weight_scale.scalar_type() == torch::kFloat32 && weight_scale.numel() == N &&
                weight_scale.is_contiguous(), "int8_linear: one float32 scale per output row");
    const torch::Tensor rows = x.reshape({-1, K}).contiguous();
    const int64_t M = rows.size(0);
    std::vector<int8_t> xq(M * K), abs_xq(M * K);
    std::vector<float> x_scale(M);
    for (int64_t m = 0; m < M; ++m) {
        x_scale[m] = quantize_row(rows.data_ptr<float>() + m * K, xq.data() + m * K, K);
    }
    for (int64_t i = 0; i < M * K; ++i) abs_xq[i] = static_cast<int8_t>(std::abs(xq[i]));
    torch::Tensor y = torch::empty({M, N}, x.options());
    const int8_t* W = weight.data_ptr<int8_t>();
    const int8_t* X = xq.data();
    const int8_t* AX = abs_xq.data();
    const float* SW = weight_scale.data_ptr<float>();
    const float* B = nullptr;
    if (bias.has_value()) {
        TORCH_CHECK(bias->scalar_type() == torch::kFloat32 && bias->numel() == N && bias->is_contiguous(),
                    "int8_linear: bias must be float32 with one value per output row");
        B = bias->data_ptr<float>();
    }
    float* Y = y.data_ptr<float>();
    // Threads split the output rows; 16 rows is the least worth a thread's start.
    at::parallel_for(0, N, 16, [&](int64_t n0, int64_t n1) {
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
    });
    std::vector<int64_t> shape = x.sizes().vec();
    shape.back() = N;
    return y.view(shape);
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("int8_linear", &int8_linear, "int8 x int8 linear layer (AVX2), per-row scales, optionally GELU",
          py::arg("x"), py::arg("weight"), py::arg("weight_scale"), py::arg("bias"), py::arg("gelu") = false);
}
