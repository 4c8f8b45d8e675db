// How fast a binary 3x3 convolution runs on AMX tiles, as a ±1 int8 convolution (a probe, not a kernel).
//
// The frozen BiDRN's binary convolutions run as XOR-popcount on AVX-512 (src/bidrn/deploy/csrc). On a
// CPU with AMX, int8 multiply-accumulates are as cheap as those binary ones, so this probe measures
// what the same layer gets when its ±1 signs are int8 operands of AMX's TDPBSSD: the input's signs
// (float32 NHWC -> int8 ±1 with a zero border, so zero padding is exact), the conv (16-pixel row
// tiles, two output rows by two 16-channel weight tiles per step), and the epilogue y = dot * m + a.
// It checks itself against a scalar reference (max err must be 0) and prints the median time.
//
// Build and run on a Linux x86-64 CPU with AMX (Sapphire Rapids or later), GCC >= 11:
//
//   g++ -O2 -std=c++17 -mavx512f -mavx512bw -mavx512vl -mamx-tile -mamx-int8 benchmarks/amx_binary_conv.cpp -o amx
//   ./amx 2 16 16 256 256        # N H W C O: batch, map height and width, input and output channels
//
// and compare with the packed layer of the same shape (packing, XOR-popcount conv, epilogue):
//
//   python benchmarks/bench_kernels.py --batch 2      # conv3x3 rows; or bidrn.deploy.benchmark.LayerCase
//
// Shapes: H even, W a multiple of 16, C a multiple of 64, O a multiple of 32.
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

// GCC 12 reports its own _mm512_undefined_ps() inside the AVX-512 conversion intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

struct TileConfig {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t bytes_per_row[16];
  uint8_t rows[16];
};

struct Layer {
  int batch, height, width, in_channels, out_channels;
  size_t padded_pixel(int n, int h, int w) const {  // index of a pixel of the bordered int8 input
    return (size_t(n) * (height + 2) + h) * (width + 2) + w;
  }
};

// Linux hands out AMX state only on request (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
bool request_amx() { return syscall(SYS_arch_prctl, 0x1023, 18) == 0; }

// Signs of a float32 NHWC input as int8 ±1 (x < 0 -> -1, as the packed layers binarize), one zero
// pixel of border around each map.
void input_signs(const Layer& L, const float* x, int8_t* signs) {
  std::memset(signs, 0, L.padded_pixel(L.batch, 0, 0) * L.in_channels);
  for (int n = 0; n < L.batch; ++n)
    for (int h = 0; h < L.height; ++h)
      for (int w = 0; w < L.width; ++w) {
        const float* src = x + ((size_t(n) * L.height + h) * L.width + w) * L.in_channels;
        int8_t* dst = signs + L.padded_pixel(n, h + 1, w + 1) * L.in_channels;
        for (int c = 0; c < L.in_channels; c += 16) {
          const __mmask16 negative = _mm512_cmp_ps_mask(_mm512_loadu_ps(src + c), _mm512_setzero_ps(), _CMP_LT_OQ);
          _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + c),
                           _mm_mask_blend_epi8(negative, _mm_set1_epi8(1), _mm_set1_epi8(-1)));
        }
      }
}

// ±1 weights w[o][tap][c] as TDPBSSD's B operand: per (tap, 64-channel chunk, 16 output channels) one
// 16 x 64-byte tile whose row r holds, for each output channel j, input channels 4r..4r+3.
std::vector<int8_t> weight_tiles(const Layer& L, const std::vector<int8_t>& w) {
  const int chunks = L.in_channels / 64, blocks = L.out_channels / 16;
  std::vector<int8_t> tiles(size_t(9) * chunks * blocks * 1024);
  for (int tap = 0; tap < 9; ++tap)
    for (int k = 0; k < chunks; ++k)
      for (int ob = 0; ob < blocks; ++ob) {
        int8_t* tile = &tiles[((size_t(tap) * chunks + k) * blocks + ob) * 1024];
        for (int r = 0; r < 16; ++r)
          for (int j = 0; j < 16; ++j)
            for (int i = 0; i < 4; ++i)
              tile[r * 64 + j * 4 + i] = w[(size_t(ob * 16 + j) * 9 + tap) * L.in_channels + k * 64 + 4 * r + i];
      }
  return tiles;
}

// 3x3, stride 1, zero padding 1: out = dot * multiplier + addend, float32 NHWC.
void conv(const Layer& L, const int8_t* signs, const int8_t* tiles, const float* multiplier, const float* addend,
          float* out) {
  alignas(64) int32_t sums[2][16][32];  // [row][pixel][channel] of one 2 x 2 tile block
  const int chunks = L.in_channels / 64, blocks = L.out_channels / 16;
  const size_t row_bytes = size_t(L.width + 2) * L.in_channels;
  for (int n = 0; n < L.batch; ++n)
    for (int oh = 0; oh < L.height; oh += 2)
      for (int ow = 0; ow < L.width; ow += 16)
        for (int ob = 0; ob < blocks; ob += 2) {
          _tile_zero(0);
          _tile_zero(1);
          _tile_zero(2);
          _tile_zero(3);
          for (int tap = 0; tap < 9; ++tap) {
            const int8_t* a = signs + L.padded_pixel(n, oh + tap / 3, ow + tap % 3) * L.in_channels;
            const int8_t* b = tiles + (size_t(tap) * chunks * blocks + ob) * 1024;
            for (int k = 0; k < chunks; ++k, a += 64, b += size_t(blocks) * 1024) {
              _tile_loadd(4, a, L.in_channels);              // 16 pixels of row oh
              _tile_loadd(5, a + row_bytes, L.in_channels);  // ... of row oh + 1
              _tile_loadd(6, b, 64);
              _tile_loadd(7, b + 1024, 64);
              _tile_dpbssd(0, 4, 6);
              _tile_dpbssd(1, 4, 7);
              _tile_dpbssd(2, 5, 6);
              _tile_dpbssd(3, 5, 7);
            }
          }
          _tile_stored(0, &sums[0][0][0], 128);
          _tile_stored(1, &sums[0][0][16], 128);
          _tile_stored(2, &sums[1][0][0], 128);
          _tile_stored(3, &sums[1][0][16], 128);
          for (int r = 0; r < 2; ++r)
            for (int p = 0; p < 16; ++p) {
              float* o = out + ((size_t(n) * L.height + oh + r) * L.width + ow + p) * L.out_channels + ob * 16;
              for (int v = 0; v < 2; ++v) {
                const __m512 dot = _mm512_cvtepi32_ps(_mm512_load_si512(&sums[r][p][v * 16]));
                _mm512_storeu_ps(o + v * 16, _mm512_fmadd_ps(dot, _mm512_loadu_ps(multiplier + ob * 16 + v * 16),
                                                              _mm512_loadu_ps(addend + ob * 16 + v * 16)));
              }
            }
        }
}

double reference_error(const Layer& L, const std::vector<float>& x, const std::vector<int8_t>& w,
                       const std::vector<float>& m, const std::vector<float>& a, const std::vector<float>& out) {
  double worst = 0;
  for (int n = 0; n < L.batch; ++n)
    for (int h = 0; h < L.height; ++h)
      for (int ww = 0; ww < L.width; ++ww)
        for (int o = 0; o < L.out_channels; ++o) {
          int dot = 0;
          for (int tap = 0; tap < 9; ++tap) {
            const int ih = h + tap / 3 - 1, iw = ww + tap % 3 - 1;
            if (ih < 0 || iw < 0 || ih >= L.height || iw >= L.width) continue;
            const float* px = &x[((size_t(n) * L.height + ih) * L.width + iw) * L.in_channels];
            const int8_t* wo = &w[(size_t(o) * 9 + tap) * L.in_channels];
            for (int c = 0; c < L.in_channels; ++c) dot += (px[c] < 0 ? -1 : 1) * wo[c];
          }
          const float got = out[((size_t(n) * L.height + h) * L.width + ww) * L.out_channels + o];
          worst = std::max(worst, double(std::fabs(dot * m[o] + a[o] - got)));
        }
  return worst;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s N H W C O [repeats]\n", argv[0]);
    return 2;
  }
  const Layer L{std::atoi(argv[1]), std::atoi(argv[2]), std::atoi(argv[3]), std::atoi(argv[4]), std::atoi(argv[5])};
  const int repeats = argc > 6 ? std::atoi(argv[6]) : 500;
  if (L.batch < 1 || L.height < 2 || L.height % 2 || L.width % 16 || L.width < 16 || L.in_channels % 64 ||
      L.in_channels < 64 || L.out_channels % 32 || L.out_channels < 32 || repeats < 1) {
    std::fprintf(stderr, "shapes: N >= 1, H even, W a multiple of 16, C of 64, O of 32\n");
    return 2;
  }
  if (!__builtin_cpu_supports("amx-int8") || !request_amx()) {
    std::fprintf(stderr, "this CPU or kernel does not give AMX-INT8\n");
    return 1;
  }
  TileConfig config{};
  config.palette = 1;
  for (int i = 0; i < 8; ++i) config.rows[i] = 16, config.bytes_per_row[i] = 64;
  _tile_loadconfig(&config);

  std::mt19937 rng(0);
  std::uniform_real_distribution<float> uniform(-1, 1);
  std::vector<float> x(size_t(L.batch) * L.height * L.width * L.in_channels);
  for (float& v : x) v = uniform(rng);
  std::vector<int8_t> w(size_t(L.out_channels) * 9 * L.in_channels);
  for (int8_t& v : w) v = uniform(rng) < 0 ? -1 : 1;
  std::vector<float> multiplier(L.out_channels), addend(L.out_channels);
  for (int o = 0; o < L.out_channels; ++o) multiplier[o] = uniform(rng), addend[o] = uniform(rng);
  const std::vector<int8_t> tiles = weight_tiles(L, w);
  std::vector<int8_t> signs(L.padded_pixel(L.batch, 0, 0) * L.in_channels);
  std::vector<float> out(size_t(L.batch) * L.height * L.width * L.out_channels);

  std::vector<double> ms;
  for (int r = 0; r <= repeats; ++r) {  // the first call checks, the others are timed
    const auto start = std::chrono::steady_clock::now();
    input_signs(L, x.data(), signs.data());
    conv(L, signs.data(), tiles.data(), multiplier.data(), addend.data(), out.data());
    if (r) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  _tile_release();
  const double error = reference_error(L, x, w, multiplier, addend, out);
  std::sort(ms.begin(), ms.end());
  const double median = ms[ms.size() / 2];
  const double macs = double(L.batch) * L.height * L.width * L.out_channels * 9 * L.in_channels;
  std::printf("3x3 conv %dx%dx%dx%d -> %d: max error %g, median %.4f ms, %.0f G binary MACs/s\n", L.batch, L.height,
              L.width, L.in_channels, L.out_channels, error, median, macs / median / 1e6);
  return error == 0 ? 0 : 1;
}
