// AVX2 kernel set: no vector popcount instruction, so popcounts use the nibble lookup table with
// VPSHUFB (Mula's method). Activations are packed as two planes, low and high nibbles, so that an
// activation word needs no shifting here; weight nibbles are split once per word and reused by
// every pixel of the tile. Per-byte counts are accumulated for up to 31 words and then widened with
// VPSADBW, which keeps the widening off the inner loop.
//
// Register tile: kPixels output pixels x one block of 8 output channels (two vectors of four 64-bit
// lanes): 8 byte accumulators, 4 weight nibble vectors, the table, the mask and one activation pair.
#include "bitconv.hpp"

#ifdef BIDRN_X86_DISPATCH
#include <immintrin.h>

#include <algorithm>
#include <vector>

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,popcnt"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,popcnt")
#endif

#include "epilogue.hpp"
#include "pack.hpp"
#include "simd_avx2.hpp"
#include "tiles.hpp"

namespace bidrn {
namespace {

constexpr int kPixels = 4;
constexpr int kPlanes = 2;
constexpr int64_t kMaxByteWords = 31;  // 31 words x 8 bits per byte <= 255

// How segment_popcounts combines its counts with `counts`.
enum class Segment { kOnly, kFirst, kNext };

// Counts of (activation XOR weight) for steps [begin, end) (one step: one weight word, all pixels)
// into the 32-bit `counts[i * kOcChunk + k]`, k < 8: doubled when this is the only segment, else
// stored (first) or added (next). At most kMaxByteWords steps, so the byte accumulators cannot
// overflow; they live only inside this loop, in registers.
template <Segment Kind>
inline void segment_popcounts(const uint64_t* const (&pixel)[kPixels], const int64_t* offsets,
                              const uint64_t* w, int64_t begin, int64_t end, int32_t* counts) {
  const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2, 2,
                                         3, 1, 2, 2, 3, 2, 3, 3, 4);
  const __m256i nibbles = _mm256_set1_epi8(0x0f);
  const __m256i zero = _mm256_setzero_si256();
  __m256i bytes[kPixels][2];
  for (int i = 0; i < kPixels; ++i) bytes[i][0] = bytes[i][1] = zero;
  for (int64_t step = begin; step < end; ++step) {
    const uint64_t* ws = w + step * kOcBlock;
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws));
    const __m256i w1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ws + 4));
    const __m256i w0_lo = _mm256_and_si256(w0, nibbles);
    const __m256i w0_hi = _mm256_and_si256(_mm256_srli_epi64(w0, 4), nibbles);
    const __m256i w1_lo = _mm256_and_si256(w1, nibbles);
    const __m256i w1_hi = _mm256_and_si256(_mm256_srli_epi64(w1, 4), nibbles);
    const int64_t offset = offsets[step];
    for (int i = 0; i < kPixels; ++i) {
      const uint64_t* x = pixel[i] + offset;
      const __m256i x_lo = _mm256_set1_epi64x(static_cast<long long>(x[0]));
      const __m256i x_hi = _mm256_set1_epi64x(static_cast<long long>(x[1]));
      bytes[i][0] = _mm256_add_epi8(bytes[i][0], _mm256_shuffle_epi8(table, _mm256_xor_si256(x_lo, w0_lo)));
      bytes[i][0] = _mm256_add_epi8(bytes[i][0], _mm256_shuffle_epi8(table, _mm256_xor_si256(x_hi, w0_hi)));
      bytes[i][1] = _mm256_add_epi8(bytes[i][1], _mm256_shuffle_epi8(table, _mm256_xor_si256(x_lo, w1_lo)));
      bytes[i][1] = _mm256_add_epi8(bytes[i][1], _mm256_shuffle_epi8(table, _mm256_xor_si256(x_hi, w1_hi)));
    }
  }
  for (int i = 0; i < kPixels; ++i) {
    // Two vectors of four 64-bit byte sums -> eight 32-bit counts in channel order.
    const __m256i sums0 = _mm256_sad_epu8(bytes[i][0], zero), sums1 = _mm256_sad_epu8(bytes[i][1], zero);
    const __m256i low_halves = _mm256_castps_si256(
        _mm256_shuffle_ps(_mm256_castsi256_ps(sums0), _mm256_castsi256_ps(sums1), _MM_SHUFFLE(2, 0, 2, 0)));
    const __m256i ordered = _mm256_permute4x64_epi64(low_halves, _MM_SHUFFLE(3, 1, 2, 0));
    __m256i* target = reinterpret_cast<__m256i*>(counts + i * kOcChunk);
    if (Kind == Segment::kOnly)
      _mm256_storeu_si256(target, _mm256_add_epi32(ordered, ordered));
    else if (Kind == Segment::kFirst)
      _mm256_storeu_si256(target, ordered);
    else
      _mm256_storeu_si256(target, _mm256_add_epi32(_mm256_loadu_si256(target), ordered));
  }
}

// lost[i * kOcChunk + k] = 2 * popcount for pixel[i] and the 8 channels of the weight block `w`
// ((taps, words, 8) words), k < 8; `offsets` holds each step's activation offset from a pixel.
inline void block_popcounts(int64_t steps, const uint64_t* const (&pixel)[kPixels], const int64_t* offsets,
                            const uint64_t* w, int32_t* lost) {
  if (steps <= kMaxByteWords) {
    segment_popcounts<Segment::kOnly>(pixel, offsets, w, 0, steps, lost);
    return;
  }
  segment_popcounts<Segment::kFirst>(pixel, offsets, w, 0, kMaxByteWords, lost);
  for (int64_t begin = kMaxByteWords; begin < steps; begin += kMaxByteWords)
    segment_popcounts<Segment::kNext>(pixel, offsets, w, begin, std::min(steps, begin + kMaxByteWords), lost);
  for (int i = 0; i < kPixels; ++i) {
    __m256i* target = reinterpret_cast<__m256i*>(lost + i * kOcChunk);
    const __m256i counts = _mm256_loadu_si256(target);
    _mm256_storeu_si256(target, _mm256_add_epi32(counts, counts));
  }
}

// Activation offset (in words, from a pixel's first word) of every step: taps in order, then words.
std::vector<int64_t> step_offsets(const ConvArgs& a) {
  std::vector<int64_t> offsets;
  offsets.reserve(a.kernel_h * a.kernel_w * a.words);
  const int64_t stride = a.pixel_words * kPlanes;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh)
    for (int64_t kw = 0; kw < a.kernel_w; ++kw)
      for (int64_t j = 0; j < a.words; ++j)
        offsets.push_back((kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * stride + kPlanes * j);
  return offsets;
}

// Summed: a conv of several branches (ConvArgs::branches); compiled apart from the one-branch loop
// (conv_jobs_by_branches, tiles.hpp).
template <bool Summed>
void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t steps = a.kernel_h * a.kernel_w * a.words;
  const int64_t stride = a.pixel_words * kPlanes;
  const Interior rows = interior_rows(a), columns = interior_columns(a);
  const std::vector<int64_t> offsets = step_offsets(a);
  constexpr int64_t kLostPerBranch = kPixels * kOcChunk;
  const Branches<Summed> branches(a);
  alignas(32) int32_t lost[Branches<Summed>::kMax * kLostPerBranch];
  for_each_tile<kPixels>(a, begin, end, [&](int64_t n, int64_t oh, int64_t ow, int pixels, int64_t oc0) {
    const int64_t count = std::min<int64_t>(kOcChunk, a.out_channels - oc0);
    const int64_t blocks = (count + kOcBlock - 1) / kOcBlock;
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * stride;
    for (int g = 0; g < branches.count(); ++g) {
      const ConvArgs& b = branches[g];
      int32_t* const branch_lost = lost + g * kLostPerBranch;
      const uint64_t* pixel[kPixels];
      for (int i = 0; i < kPixels; ++i) {
        const int64_t x = ow + std::min(i, pixels - 1);  // a short tile repeats its last pixel
        pixel[i] = row_base + (x * b.stride_w + b.offset_w + b.buf_left) * stride + kPlanes * b.word_offset;
      }
      for (int64_t block = 0; block < blocks; ++block)
        block_popcounts(steps, pixel, offsets.data(), b.weights + (oc0 / kOcBlock + block) * steps * kOcBlock,
                        branch_lost + block * kOcBlock);
      correct_border(b, rows, columns, oh, ow, pixels, oc0, count, branch_lost);
    }
    epilogue<Avx2Vec, Summed>(a, n, oh, ow, pixels, oc0, lost, kLostPerBranch);
  });
}

}  // namespace
}  // namespace bidrn

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

namespace bidrn {
const KernelSet& avx2_kernels() {
  static const KernelSet set{"avx2", kPlanes, pack_rows<Avx2Vec, kPlanes>,
                                  conv_jobs_by_branches<conv_jobs<false>, conv_jobs<true>>};
  return set;
}
}  // namespace bidrn
#endif
