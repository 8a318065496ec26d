// What the cores' fused multiply-add units can do in float32, with nothing else in the way: each
// thread keeps 12 independent vectors of accumulators in registers and multiplies-and-adds into
// them, no memory traffic at all. A matmul can approach this rate, never pass it; it is the
// hardware ceiling that `benchmarks/bench_peak.py` sets the trainer's reference (a matmul's best
// call) against. Built with -march=native: 512-bit FMAs where the CPU has AVX-512, 256-bit where
// it has AVX2 + FMA.
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#if defined(__AVX512F__)
using Vec = __m512;
static constexpr int64_t kLanes = 16;
static inline Vec splat(float x) { return _mm512_set1_ps(x); }
static inline Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
static inline float lane_sum(Vec a) { return _mm512_reduce_add_ps(a); }
#elif defined(__AVX2__) && defined(__FMA__)
using Vec = __m256;
static constexpr int64_t kLanes = 8;
static inline Vec splat(float x) { return _mm256_set1_ps(x); }
static inline Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
static inline float lane_sum(Vec a) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, a);
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum;
}
#else
#error "fma_peak needs AVX2 + FMA or AVX-512"
#endif

static constexpr int64_t kAccumulators = 12;  // > FMA latency x FMA units (4 x 2 on recent x86)

// `iterations` rounds of 12 vector FMAs on each of `threads` threads; returns the sum of every
// accumulator. a = a * 0.5 + 1 reaches 2.0 exactly after a few dozen rounds and stays there, so
// the sum is 2 * 12 * lanes * threads: the caller can check the work was done, and the compiler
// cannot know the multiplier and addend (they are arguments).
double fma_loop(int64_t iterations, int64_t threads, double multiplier, double addend) {
  std::vector<double> sums(threads, 0.0);
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const Vec x = splat(static_cast<float>(multiplier)), y = splat(static_cast<float>(addend));
      Vec a0 = splat(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0, a8 = a0, a9 = a0,
          a10 = a0, a11 = a0;
      for (int64_t i = 0; i < iterations; ++i) {
        a0 = fma(a0, x, y); a1 = fma(a1, x, y); a2 = fma(a2, x, y); a3 = fma(a3, x, y);
        a4 = fma(a4, x, y); a5 = fma(a5, x, y); a6 = fma(a6, x, y); a7 = fma(a7, x, y);
        a8 = fma(a8, x, y); a9 = fma(a9, x, y); a10 = fma(a10, x, y); a11 = fma(a11, x, y);
      }
      for (Vec a : {a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11}) sums[t] += lane_sum(a);
    }
  });
  double total = 0.0;
  for (double s : sums) total += s;
  return total;
}

int64_t flops_per_iteration() { return kAccumulators * kLanes * 2; }  // per thread; an FMA is 2 FLOPs

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fma_loop", &fma_loop, "rounds of register-only float32 FMAs on threads; the accumulators' sum");
  m.def("flops_per_iteration", &flops_per_iteration, "FLOPs one thread does per round");
}
