// ARM NEON kernel set (AArch64, where NEON is part of the base ISA): VCNT byte popcounts,
// accumulated per byte for up to 31 words and then widened with pairwise adds.
//
// Register tile: kPixels output pixels x 8 output channels (four vectors of two 64-bit lanes).
#include "bitconv.hpp"

#ifdef BIDRN_NEON
#include <arm_neon.h>

#include <algorithm>

#include "epilogue.hpp"
#include "pack.hpp"
#include "simd_neon.hpp"
#include "tiles.hpp"

namespace bidrn {
namespace {

constexpr int kPixels = 2;
constexpr int kVectors = 4;            // 4 vectors x 2 lanes = one block of 8 output channels
constexpr int64_t kMaxByteWords = 31;  // 31 words x 8 bits per byte <= 255

inline uint64x2_t widen(uint8x16_t bytes) { return vpaddlq_u32(vpaddlq_u16(vpaddlq_u8(bytes))); }

// lost[i * kOcChunk + k] = 2 * popcount for pixel[i] and the 8 channels of the weight block `w`.
inline void block_popcounts(const ConvArgs& a, const uint64_t* const (&pixel)[kPixels], const uint64_t* w,
                            int32_t* lost) {
  uint64x2_t pop[kPixels][kVectors];
  uint8x16_t bytes[kPixels][kVectors];
  for (int i = 0; i < kPixels; ++i)
    for (int v = 0; v < kVectors; ++v) {
      pop[i][v] = vdupq_n_u64(0);
      bytes[i][v] = vdupq_n_u8(0);
    }
  int64_t pending = 0;
  for (int64_t kh = 0; kh < a.kernel_h; ++kh)
    for (int64_t kw = 0; kw < a.kernel_w; ++kw) {
      const int64_t tap = (kh * a.dilation_h * a.buf_w + kw * a.dilation_w) * a.pixel_words;
      for (int64_t j = 0; j < a.words; ++j, w += kOcBlock) {
        uint64x2_t weights[kVectors];
        for (int v = 0; v < kVectors; ++v) weights[v] = vld1q_u64(w + 2 * v);
        for (int i = 0; i < kPixels; ++i) {
          const uint64x2_t x = vdupq_n_u64(pixel[i][tap + j]);
          for (int v = 0; v < kVectors; ++v)
            bytes[i][v] = vaddq_u8(bytes[i][v], vcntq_u8(vreinterpretq_u8_u64(veorq_u64(x, weights[v]))));
        }
        if (++pending == kMaxByteWords) {
          for (int i = 0; i < kPixels; ++i)
            for (int v = 0; v < kVectors; ++v) {
              pop[i][v] = vaddq_u64(pop[i][v], widen(bytes[i][v]));
              bytes[i][v] = vdupq_n_u8(0);
            }
          pending = 0;
        }
      }
    }
  for (int i = 0; i < kPixels; ++i)
    for (int v = 0; v < kVectors; ++v) {
      const uint64x2_t counts = vaddq_u64(pop[i][v], widen(bytes[i][v]));
      const uint32x2_t doubled = vshl_n_u32(vmovn_u64(counts), 1);
      vst1_s32(lost + i * kOcChunk + 2 * v, vreinterpret_s32_u32(doubled));
    }
}

// Summed: a conv of several branches (ConvArgs::branches); compiled apart from the one-branch loop
// (conv_jobs_by_branches, tiles.hpp).
template <bool Summed>
void conv_jobs(const ConvArgs& a, int64_t begin, int64_t end) {
  const int64_t taps = a.kernel_h * a.kernel_w;
  const Interior rows = interior_rows(a), columns = interior_columns(a);
  constexpr int64_t kLostPerBranch = kPixels * kOcChunk;
  const Branches<Summed> branches(a);
  int32_t lost[Branches<Summed>::kMax * kLostPerBranch];
  for_each_tile<kPixels>(a, begin, end, [&](int64_t n, int64_t oh, int64_t ow, int pixels, int64_t oc0) {
    const int64_t blocks = std::min<int64_t>(kOcChunk, a.out_channels - oc0 + kOcBlock - 1) / kOcBlock;
    const uint64_t* row_base =
        a.packed + (n * a.buf_h + oh * a.stride_h + a.offset_h + a.buf_top) * a.buf_w * a.pixel_words;
    for (int g = 0; g < branches.count(); ++g) {
      const ConvArgs& b = branches[g];
      int32_t* const branch_lost = lost + g * kLostPerBranch;
      const uint64_t* pixel[kPixels];
      for (int i = 0; i < kPixels; ++i) {
        const int64_t x = ow + std::min(i, pixels - 1);  // a short tile repeats its last pixel
        pixel[i] = row_base + (x * b.stride_w + b.offset_w + b.buf_left) * b.pixel_words + b.word_offset;
      }
      for (int64_t block = 0; block < blocks; ++block)
        block_popcounts(b, pixel, b.weights + (oc0 / kOcBlock + block) * taps * b.words * kOcBlock,
                        branch_lost + block * kOcBlock);
      correct_border(b, rows, columns, oh, ow, pixels, oc0, blocks * kOcBlock, branch_lost);
    }
    epilogue<NeonVec, Summed>(a, n, oh, ow, pixels, oc0, lost, kLostPerBranch);
  });
}

}  // namespace

const KernelSet& neon_kernels() {
  static const KernelSet set{"neon", 1, pack_rows<NeonVec, 1>,
                                  conv_jobs_by_branches<conv_jobs<false>, conv_jobs<true>>};
  return set;
}

}  // namespace bidrn
#endif
