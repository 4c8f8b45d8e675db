// Exactness of one compiled kernel set against the portable reference kernels ("generic"), on
// randomized shapes: packed bits must be identical, integer conv results bit-exact, and results
// with every post-op equal up to float rounding (fused and unfused multiply-adds differ).
//
// Built by .ci/run for AArch64 (NEON) and run under qemu-aarch64 (see there for the command line):
//   qemu-aarch64 ./kernel_exactness neon 400
// On x86 it also checks the x86 sets (build with common, generic, popcnt, avx2, avx512 .cpp files).
// Exit status 0 when every case agrees; the first disagreement is printed.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bitconv.hpp"

using namespace bidrn;

namespace {

const KernelSet* find_set(const std::string& name) {
#ifdef BIDRN_NEON
  if (name == "neon") return &neon_kernels();
#endif
#ifdef BIDRN_X86_DISPATCH
  if (name == "avx2" && __builtin_cpu_supports("avx2")) return &avx2_kernels();
  if (name == "popcnt" && __builtin_cpu_supports("popcnt")) return &popcnt_kernels();
  if (name == "avx512" && __builtin_cpu_supports("avx512vpopcntdq")) return &avx512_kernels();
#endif
  if (name == "generic") return &generic_kernels();
  return nullptr;
}

struct Case {
  int64_t batch, channels, out_channels, height, width, kernel, stride, padding, dilation;
  int64_t groups;     // the packed input holds `groups` channel groups; the conv reads the last ones
  int64_t branches;   // summed in registers (ConvArgs::branches), each reading one of those groups
  bool threshold, post, pooled, earlier, clamp, sample_scale;
};

Case random_case(std::mt19937_64& rng) {
  auto pick = [&](std::initializer_list<int64_t> values) { return *(values.begin() + rng() % values.size()); };
  Case c{};
  c.batch = 1 + rng() % 3;
  c.channels = pick({1, 3, 8, 63, 64, 65, 128, 130, 200, 256});
  c.out_channels = 1 + rng() % 70;
  c.kernel = pick({1, 2, 3, 5});
  c.stride = pick({1, 2});
  c.padding = rng() % 3;
  c.dilation = pick({1, 2});
  const int64_t reach = c.dilation * (c.kernel - 1) + 1;
  c.height = std::max<int64_t>(reach - 2 * c.padding, 1) + rng() % 8;
  c.width = std::max<int64_t>(reach - 2 * c.padding, 1) + rng() % 8;
  c.groups = (c.channels % 64 == 0) ? 1 + rng() % kMaxBranches : 1;
  c.branches = 1 + rng() % c.groups;
  c.threshold = rng() % 3 == 0;
  c.post = rng() % 2 == 0;
  c.pooled = c.post && rng() % 2 == 0;
  c.earlier = c.post && rng() % 2 == 0;  // each post-op combination the kernels specialize, and more
  c.clamp = c.post && rng() % 2 == 0;
  c.sample_scale = rng() % 4 == 0;
  return c;
}

struct Result {
  std::vector<uint64_t> packed;
  std::vector<float> out, mean_abs;
};

// Pack and convolve one case with `set`; every random operand comes from `seed`. With
// `one_conv_per_branch`, the branches run as separate convs, each after the first accumulating into
// the output and the last one clamping: what one conv of several branches must equal bit for bit.
Result run_case(const KernelSet& set, const Case& c, uint64_t seed, bool one_conv_per_branch = false) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const int64_t total_channels = c.channels * c.groups, pixel_words = (total_channels + 63) / 64;
  const int64_t words = (c.channels + 63) / 64, word_offset = (c.groups - c.branches) * c.channels / 64;
  const int64_t out_h = (c.height + 2 * c.padding - c.dilation * (c.kernel - 1) - 1) / c.stride + 1;
  const int64_t out_w = (c.width + 2 * c.padding - c.dilation * (c.kernel - 1) - 1) / c.stride + 1;
  const int64_t reach = c.dilation * (c.kernel - 1);
  const int64_t bottom = std::max<int64_t>(0, (out_h - 1) * c.stride - c.padding + reach - c.height + 1);
  const int64_t right = std::max<int64_t>(0, (out_w - 1) * c.stride - c.padding + reach - c.width + 1);
  const int64_t buf_h = c.height + c.padding + bottom, buf_w = c.width + c.padding + right;
  const int64_t taps = c.kernel * c.kernel, padded = (c.out_channels + 31) / 32 * 32;

  std::vector<float> input(c.batch * c.height * c.width * total_channels);
  for (float& v : input) v = (rng() % 5 == 0) ? 0.0f : uniform(rng);  // exact zeros are +1
  std::vector<float> threshold(total_channels);
  for (float& v : threshold) v = 0.3f * uniform(rng);
  // Every operand below holds the branches one after the other.
  const int64_t branch_weights = padded * taps * words;
  std::vector<uint64_t> weights(c.branches * branch_weights, 0);
  std::vector<int32_t> tap_sums(c.branches * taps * padded, 0);
  for (int64_t g = 0; g < c.branches; ++g)
    for (int64_t o = 0; o < c.out_channels; ++o)
      for (int64_t t = 0; t < taps; ++t) {
        int32_t sum = 0;
        for (int64_t j = 0; j < words; ++j) {
          const int64_t bits = std::min<int64_t>(64, c.channels - j * 64);
          const uint64_t word = bits == 64 ? rng() : rng() & ((1ull << bits) - 1);
          weights[g * branch_weights + ((o / kOcBlock * taps + t) * words + j) * kOcBlock + o % kOcBlock] = word;
          sum += static_cast<int32_t>(bits) - 2 * __builtin_popcountll(word);
        }
        tap_sums[(g * taps + t) * padded + o] = sum;
      }
  auto vector_of = [&](float scale, float shift) {
    std::vector<float> v(c.branches * padded);
    for (float& x : v) x = shift + scale * uniform(rng);
    return v;
  };
  const std::vector<float> multiplier = c.post ? vector_of(0.5f, 1.0f) : std::vector<float>(c.branches * padded, 1.0f);
  const std::vector<float> addend = c.post ? vector_of(1.0f, 0.0f) : std::vector<float>(c.branches * padded, 0.0f);
  const std::vector<float> slope = vector_of(0.2f, 0.25f), scale = vector_of(0.3f, 1.0f), shift = vector_of(0.5f, 0.0f);
  // A pooled residual map has 2 * out_h - 1 or 2 * out_h rows (ceil_mode), likewise columns.
  const int64_t res_h = c.pooled ? 2 * out_h - static_cast<int64_t>(rng() % 2) : out_h;
  const int64_t res_w = c.pooled ? 2 * out_w - static_cast<int64_t>(rng() % 2) : out_w;
  const int64_t res_channels = c.branches * c.out_channels;  // branch g adds channels [g, g + 1) * out_channels
  std::vector<float> residual(c.batch * res_h * res_w * res_channels), earlier(c.batch * out_h * out_w * c.out_channels);
  for (float& v : residual) v = uniform(rng);
  for (float& v : earlier) v = uniform(rng);

  Result result;
  result.packed.assign(c.batch * buf_h * buf_w * pixel_words * set.planes, 0);
  result.mean_abs.assign(c.batch, 0.0f);
  std::vector<double> row_sums(c.batch * c.height, 0.0);
  PackArgs p{};
  p.abi_version = kAbiVersion;
  p.struct_size = sizeof(PackArgs);
  p.input = input.data();
  p.threshold = c.threshold ? threshold.data() : nullptr;
  p.packed = result.packed.data();
  p.batch = c.batch;
  p.in_h = c.height;
  p.in_w = c.width;
  p.channels = total_channels;
  p.buf_h = buf_h;
  p.buf_w = buf_w;
  p.buf_top = c.padding;
  p.buf_left = c.padding;
  p.pixel_words = pixel_words;
  p.in_stride_n = c.height * c.width * total_channels;
  p.in_stride_h = c.width * total_channels;
  p.in_stride_w = total_channels;
  set.pack_rows(p, 0, c.batch * c.height, c.sample_scale ? row_sums.data() : nullptr);
  for (int64_t n = 0; n < c.batch; ++n) {
    double total = 0.0;
    for (int64_t h = 0; h < c.height; ++h) total += row_sums[n * c.height + h];
    result.mean_abs[n] = static_cast<float>(total / (c.height * c.width * total_channels));
  }

  result.out.assign(c.batch * out_h * out_w * c.out_channels, 0.0f);
  ConvArgs a{};
  a.abi_version = kAbiVersion;
  a.struct_size = sizeof(ConvArgs);
  a.packed = result.packed.data();
  a.weights = weights.data();
  a.tap_sums = tap_sums.data();
  a.multiplier = multiplier.data();
  a.addend = addend.data();
  a.sample_scale = c.sample_scale ? result.mean_abs.data() : nullptr;
  a.out = result.out.data();
  a.batch = c.batch;
  a.in_h = c.height;
  a.in_w = c.width;
  a.buf_h = buf_h;
  a.buf_w = buf_w;
  a.buf_top = c.padding;
  a.buf_left = c.padding;
  a.pixel_words = pixel_words;
  a.word_offset = word_offset;
  a.words = words;
  a.channels = c.channels;
  a.kernel_h = a.kernel_w = c.kernel;
  a.stride_h = a.stride_w = c.stride;
  a.dilation_h = a.dilation_w = c.dilation;
  a.offset_h = a.offset_w = -c.padding;
  a.out_h = out_h;
  a.out_w = out_w;
  a.out_channels = c.out_channels;
  a.out_channels_padded = padded;
  a.out_stride_n = out_h * out_w * c.out_channels;
  a.out_stride_h = out_w * c.out_channels;
  a.out_stride_w = c.out_channels;
  if (c.post) {
    a.post_slope = slope.data();
    a.post_scale = scale.data();
    a.post_shift = shift.data();
    a.residual = residual.data();
    a.res_stride_n = res_h * res_w * res_channels;
    a.res_stride_h = res_w * res_channels;
    a.res_stride_w = res_channels;
    a.res_h = res_h;
    a.res_w = res_w;
    a.res_pool = c.pooled ? 2 : 0;
    if (c.earlier) {
      a.accumulate_from = earlier.data();
      a.acc_stride_n = a.out_stride_n;
      a.acc_stride_h = a.out_stride_h;
      a.acc_stride_w = a.out_stride_w;
    }
    if (c.clamp) {
      a.clamp = 1;
      a.clamp_lo = -2.0f;
      a.clamp_hi = 2.5f;
    }
  }
  a.branches = c.branches;
  a.branch_words = c.channels / 64;
  a.branch_residual = c.out_channels;
  const int64_t jobs = c.batch * out_h * (padded / kOcChunk);
  if (!one_conv_per_branch) {
    set.conv_jobs(a, 0, jobs);
    return result;
  }
  for (int64_t g = 0; g < c.branches; ++g) {
    ConvArgs b = a;
    b.branches = 1;
    b.word_offset = a.word_offset + g * a.branch_words;
    b.weights = a.weights + g * branch_weights;
    b.tap_sums = a.tap_sums + g * taps * padded;
    b.multiplier = a.multiplier + g * padded;
    b.addend = a.addend + g * padded;
    if (c.post) {
      b.post_slope = a.post_slope + g * padded;
      b.post_scale = a.post_scale + g * padded;
      b.post_shift = a.post_shift + g * padded;
      b.residual = a.residual + g * a.branch_residual;
    }
    if (g > 0) {
      b.accumulate_from = result.out.data();
      b.acc_stride_n = a.out_stride_n;
      b.acc_stride_h = a.out_stride_h;
      b.acc_stride_w = a.out_stride_w;
    }
    if (g < c.branches - 1) b.clamp = 0;
    set.conv_jobs(b, 0, jobs);
  }
  return result;
}

// The reference's packed words in `planes` form (words, or their low and high nibbles).
std::vector<uint64_t> in_planes(const std::vector<uint64_t>& words, int64_t planes) {
  if (planes == 1) return words;
  std::vector<uint64_t> split;
  for (uint64_t word : words) {
    split.push_back(word & 0x0f0f0f0f0f0f0f0full);
    split.push_back((word >> 4) & 0x0f0f0f0f0f0f0f0full);
  }
  return split;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KERNEL_SET [CASES]\n", argv[0]);
    return 2;
  }
  const KernelSet* tested = find_set(argv[1]);
  if (!tested) {
    std::fprintf(stderr, "kernel set %s is not in this build or not supported by this CPU\n", argv[1]);
    return 2;
  }
  const int cases = argc > 2 ? std::atoi(argv[2]) : 300;
  std::mt19937_64 rng(20240601);
  for (int i = 0; i < cases; ++i) {
    const Case c = random_case(rng);
    const uint64_t seed = rng();
    const Result expected = run_case(generic_kernels(), c, seed), actual = run_case(*tested, c, seed);
    const bool packed_equal = in_planes(expected.packed, tested->planes) == actual.packed;
    bool out_equal = expected.out.size() == actual.out.size();
    size_t where = 0;
    for (size_t k = 0; out_equal && k < expected.out.size(); ++k) {
      const float e = expected.out[k], v = actual.out[k];
      const bool exact = !c.post && !c.sample_scale;
      out_equal = exact ? e == v : std::fabs(e - v) <= 1e-5f * std::max(1.0f, std::fabs(e));
      where = k;
    }
    for (int64_t n = 0; c.sample_scale && n < c.batch; ++n)
      out_equal = out_equal && std::fabs(expected.mean_abs[n] - actual.mean_abs[n]) <= 1e-6f;
    if (c.branches > 1 && out_equal)  // summed in registers == one conv per branch, bit for bit
      out_equal = actual.out == run_case(*tested, c, seed, true).out;
    if (!packed_equal || !out_equal) {
      std::printf(
          "case %d differs (%s): batch %lld channels %lld x%lld branches %lld out %lld size %lldx%lld kernel %lld "
          "stride %lld padding %lld dilation %lld threshold %d post %d pooled %d earlier %d clamp %d scale %d; "
          "output %zu: %g vs %g\n",
          i, packed_equal ? "conv" : "packed bits", (long long)c.batch, (long long)c.channels, (long long)c.groups,
          (long long)c.branches, (long long)c.out_channels, (long long)c.height, (long long)c.width,
          (long long)c.kernel, (long long)c.stride, (long long)c.padding, (long long)c.dilation, c.threshold, c.post,
          c.pooled, c.earlier, c.clamp, c.sample_scale, where, expected.out.empty() ? 0.0 : expected.out[where],
          actual.out.empty() ? 0.0 : actual.out[where]);
      return 1;
    }
  }
  std::printf("%s: %d random cases agree with the portable kernels\n", argv[1], cases);
  return 0;
}
