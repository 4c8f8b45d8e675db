// CPython entry points of bidrn.deploy._bitkernels, with runtime CPU dispatch.
//
// The interface is small and free of torch and numpy headers: Python fills the argument structs
// of bitconv.hpp (ctypes mirrors in bidrn/deploy/kernels.py, checked field by field against
// abi_layout() at import) and passes them as buffers. The GIL is released while kernels run.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstddef>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

#include "bitconv.hpp"
#include "thread_pool.hpp"

namespace bidrn {
namespace {

std::vector<const KernelSet*> supported_sets() {
  std::vector<const KernelSet*> sets;  // best first
#ifdef BIDRN_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq"))
    sets.push_back(&avx512_kernels());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("popcnt"))
    sets.push_back(&avx2_kernels());
  if (__builtin_cpu_supports("popcnt")) sets.push_back(&popcnt_kernels());
#endif
#ifdef BIDRN_NEON
  sets.push_back(&neon_kernels());
#endif
  sets.push_back(&generic_kernels());
  return sets;
}

const KernelSet* active = nullptr;

// Whether the CPU has bfloat16 dot-product instructions (x86: AVX512_BF16, CPUID leaf 7
// sub-leaf 1, EAX bit 5, usable only with AVX-512 enabled; AArch64 Linux: HWCAP2_BF16). Without
// them oneDNN emulates bf16 GEMMs, which is no faster than float32.
bool native_bf16() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__builtin_cpu_supports("avx512f") || !__get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx)) return false;
  return (eax >> 5) & 1u;
#elif defined(__aarch64__) && defined(__linux__)
  constexpr unsigned long kHwcap2Bf16 = 1ul << 14;
  return (getauxval(AT_HWCAP2) & kHwcap2Bf16) != 0;
#else
  return false;
#endif
}

// Whether the CPU has 8-bit integer dot products that oneDNN's u8 x s8 GEMMs use (x86: AVX512_VNNI,
// CPUID leaf 7 ECX bit 11, or AVX-VNNI, leaf 7 sub-leaf 1 EAX bit 4). Without them oneDNN falls back
// to 16-bit intermediate sums that can saturate, so int8 is never chosen there.
bool native_int8() {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __builtin_cpu_init();
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__builtin_cpu_supports("avx512f") && __get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) && ((ecx >> 11) & 1u))
    return true;
  return __builtin_cpu_supports("avx2") && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && ((eax >> 4) & 1u);
#else
  return false;
#endif
}

static_assert(sizeof(PackArgs) != sizeof(QuantizeArgs) && sizeof(PackArgs) != sizeof(ConvArgs) &&
                  sizeof(QuantizeArgs) != sizeof(ConvArgs) && sizeof(PoolArgs) != sizeof(PackArgs) &&
                  sizeof(PoolArgs) != sizeof(ConvArgs) && sizeof(PoolArgs) != sizeof(QuantizeArgs),
              "run() tells the argument structs apart by their size");

// Copy a ctypes struct (any object with the buffer protocol) of type T, checking size and version.
template <typename T>
bool read_struct(PyObject* object, T* out, const char* what) {
  Py_buffer view;
  if (PyObject_GetBuffer(object, &view, PyBUF_SIMPLE) != 0) return false;
  const bool sized = view.len == static_cast<Py_ssize_t>(sizeof(T));
  if (sized) std::memcpy(out, view.buf, sizeof(T));
  PyBuffer_Release(&view);
  if (!sized || out->struct_size != sizeof(T) || out->abi_version != kAbiVersion) {
    PyErr_Format(PyExc_ValueError, "%s: expected a %zu-byte struct of ABI version %u", what, sizeof(T),
                 kAbiVersion);
    return false;
  }
  return true;
}

bool check_pack(const PackArgs& a) {
  if (!a.input || !a.packed || a.pixel_words * 64 < a.channels || a.buf_top < 0 || a.buf_left < 0 ||
      a.buf_top + a.in_h > a.buf_h || a.buf_left + a.in_w > a.buf_w) {
    PyErr_SetString(PyExc_ValueError, "pack: inconsistent buffer geometry");
    return false;
  }
  return true;
}

bool check_conv(const ConvArgs& a) {
  const char* problem = nullptr;
  if (!a.packed || !a.weights || !a.tap_sums || !a.multiplier || !a.addend || !a.out)
    problem = "an operand pointer is null";
  else if (a.out_channels_padded % kOcChunk != 0 || a.out_channels > a.out_channels_padded)
    problem = "out_channels_padded must be a multiple of 32 and at least out_channels";
  else if (a.branches < 1 || a.branches > kMaxBranches || a.branch_words < 0 || a.branch_residual < 0)
    problem = "branches must be 1 to kMaxBranches (4), branch_words and branch_residual non-negative";
  else if (a.word_offset < 0 || a.words < 1 || a.words * 64 < a.channels ||
           a.word_offset + (a.branches - 1) * a.branch_words + a.words > a.pixel_words)
    problem = "the words read must lie inside the packed pixel";
  else if (a.post_scale && !a.post_shift)
    problem = "post_scale needs post_shift";
  else if (a.res_pool != 0 && a.res_pool != 2)
    problem = "res_pool must be 0 or 2";
  else if (a.res_channels < 0 || a.res_channels % kOcChunk != 0)
    problem = "res_channels must be 0 or a positive multiple of 32";
  if (problem) PyErr_Format(PyExc_ValueError, "conv: %s", problem);
  return problem == nullptr;
}

// Pack the input; zero the buffer's border; optionally write mean |x| per sample.
void run_pack(const PackArgs& a, int threads) {
  const int64_t planes = active->planes;
  const int64_t pixel = a.pixel_words * planes;
  const int64_t row_words = a.buf_w * pixel;
  for (int64_t n = 0; n < a.batch; ++n) {
    uint64_t* image = a.packed + n * a.buf_h * row_words;
    std::memset(image, 0, sizeof(uint64_t) * a.buf_top * row_words);
    const int64_t bottom = a.buf_top + a.in_h;
    std::memset(image + bottom * row_words, 0, sizeof(uint64_t) * (a.buf_h - bottom) * row_words);
    for (int64_t h = a.buf_top; h < bottom; ++h) {
      uint64_t* row = image + h * row_words;
      std::memset(row, 0, sizeof(uint64_t) * a.buf_left * pixel);
      const int64_t right = (a.buf_left + a.in_w) * pixel;
      std::memset(row + right, 0, sizeof(uint64_t) * (row_words - right));
    }
  }
  std::vector<double> row_sums(a.sample_mean_abs ? a.batch * a.in_h : 0);
  double* sums = a.sample_mean_abs ? row_sums.data() : nullptr;
  const PackRowsFn pack_rows = active->pack_rows;
  parallel_for(a.batch * a.in_h, threads, [&](int64_t b, int64_t e) { pack_rows(a, b, e, sums); });
  if (a.sample_mean_abs) {
    const double count = static_cast<double>(a.in_h * a.in_w * a.channels);
    for (int64_t n = 0; n < a.batch; ++n) {
      double total = 0.0;
      for (int64_t h = 0; h < a.in_h; ++h) total += row_sums[n * a.in_h + h];
      a.sample_mean_abs[n] = static_cast<float>(total / count);
    }
  }
}

// Run convs that share one job space row by row: every conv of the group on output row (n, oh)
// before the next row.
void run_convs(const ConvArgs* convs, size_t count, int threads) {
  const ConvJobsFn conv_jobs = active->conv_jobs;
  const ConvArgs& first = convs[0];
  const int64_t chunks = first.out_channels_padded / kOcChunk;
  if (count == 1) {
    parallel_for(first.batch * first.out_h * chunks, threads, [&](int64_t b, int64_t e) { conv_jobs(first, b, e); });
    return;
  }
  parallel_for(first.batch * first.out_h, threads, [&](int64_t b, int64_t e) {
    for (int64_t row = b; row < e; ++row)
      for (size_t i = 0; i < count; ++i) conv_jobs(convs[i], row * chunks, (row + 1) * chunks);
  });
}

bool check_quantize(const QuantizeArgs& a) {
  if (!a.input || !a.out || a.batch < 0 || a.in_h < 0 || a.in_w < 0 || a.channels < 0 ||
      !(a.inverse_scale > 0.0f)) {
    PyErr_SetString(PyExc_ValueError, "quantize: null pointer, negative size or non-positive scale");
    return false;
  }
  return true;
}

bool check_pool(const PoolArgs& a) {
  const bool sizes_ok = a.batch >= 0 && a.in_h >= 0 && a.in_w >= 0 && a.channels >= 0 && a.out_h >= 0 &&
                        a.out_w >= 0 && a.kernel_h > 0 && a.kernel_w > 0 && a.stride_h > 0 && a.stride_w > 0;
  // Every window must reach the input (torch's rule: padding at most half the kernel).
  const bool windows_ok = a.padding_h >= 0 && a.padding_w >= 0 && 2 * a.padding_h <= a.kernel_h &&
                          2 * a.padding_w <= a.kernel_w;
  if (!a.input || !a.out || !sizes_ok || !windows_ok || (a.bf16_input != 0 && a.bf16_input != 1)) {
    PyErr_SetString(PyExc_ValueError, "pool: null pointer, bad size, window or input type");
    return false;
  }
  return true;
}

// One step of run(): a packing pass, a quantization pass, a pooling pass, or a group of
// convolutions (ConvArgs::joins_previous).
struct Step {
  enum Kind { kPack, kQuantize, kPool, kConvs } kind;
  PackArgs pack;
  QuantizeArgs quantize;
  PoolArgs pool;
  std::vector<ConvArgs> convs;
};

// Append a step of one struct (a pack, quantization or pooling pass), read into `member` and checked.
template <typename T>
bool push_pass(PyObject* object, std::vector<Step>* steps, Step::Kind kind, T Step::*member,
               bool (*check)(const T&), const char* what) {
  Step step{kind, {}, {}, {}, {}};
  if (!read_struct(object, &(step.*member), what) || !check(step.*member)) return false;
  steps->push_back(std::move(step));
  return true;
}

// Read a step's struct (PackArgs, QuantizeArgs, PoolArgs or ConvArgs, told apart by their
// struct_size field), checked, and append it to `steps`.
bool read_step(PyObject* object, std::vector<Step>* steps) {
  Py_buffer view;
  if (PyObject_GetBuffer(object, &view, PyBUF_SIMPLE) != 0) return false;
  uint32_t header[2] = {0, 0};
  if (view.len >= static_cast<Py_ssize_t>(sizeof(header))) std::memcpy(header, view.buf, sizeof(header));
  PyBuffer_Release(&view);
  if (header[1] == sizeof(PackArgs))
    return push_pass(object, steps, Step::kPack, &Step::pack, check_pack, "pack arguments");
  if (header[1] == sizeof(QuantizeArgs))
    return push_pass(object, steps, Step::kQuantize, &Step::quantize, check_quantize, "quantize arguments");
  if (header[1] == sizeof(PoolArgs))
    return push_pass(object, steps, Step::kPool, &Step::pool, check_pool, "pool arguments");
  ConvArgs conv;
  if (!read_struct(object, &conv, "conv arguments") || !check_conv(conv)) return false;
  if (!conv.joins_previous) {
    steps->push_back(Step{Step::kConvs, {}, {}, {}, {conv}});
    return true;
  }
  if (steps->empty() || steps->back().kind != Step::kConvs) {
    PyErr_SetString(PyExc_ValueError, "conv: joins_previous needs a conv before it");
    return false;
  }
  const ConvArgs& previous = steps->back().convs.front();
  if (conv.batch != previous.batch || conv.out_h != previous.out_h ||
      conv.out_channels_padded != previous.out_channels_padded) {
    PyErr_SetString(PyExc_ValueError, "conv: joins_previous needs the previous conv's batch, out_h and channels");
    return false;
  }
  steps->back().convs.push_back(conv);
  return true;
}

// run(steps, threads): PackArgs, QuantizeArgs, PoolArgs and ConvArgs structs, executed in order with the GIL
// released.
PyObject* py_run(PyObject*, PyObject* args) {
  PyObject* objects;
  int threads;
  if (!PyArg_ParseTuple(args, "O!i", &PyTuple_Type, &objects, &threads)) return nullptr;
  const Py_ssize_t count = PyTuple_GET_SIZE(objects);
  std::vector<Step> steps;
  steps.reserve(static_cast<size_t>(count));
  for (Py_ssize_t i = 0; i < count; ++i)
    if (!read_step(PyTuple_GET_ITEM(objects, i), &steps)) return nullptr;
  Py_BEGIN_ALLOW_THREADS for (const Step& step : steps) {
    switch (step.kind) {
      case Step::kPack:
        run_pack(step.pack, threads);
        break;
      case Step::kQuantize: {
        const QuantizeArgs& quantize = step.quantize;
        parallel_for(quantize.batch * quantize.in_h, threads,
                     [&](int64_t b, int64_t e) { quantize_rows(quantize, b, e); });
        break;
      }
      case Step::kPool: {
        const PoolArgs& pool = step.pool;
        parallel_for(pool.batch * pool.out_h, threads, [&](int64_t b, int64_t e) { max_pool_rows(pool, b, e); });
        break;
      }
      case Step::kConvs:
        run_convs(step.convs.data(), step.convs.size(), threads);
        break;
    }
  }
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

// {"version": kAbiVersion, "PackArgs": (size, ((field, offset), ...)), "ConvArgs": (...),
//  "QuantizeArgs": (...), "PoolArgs": (...)}
PyObject* py_abi_layout(PyObject*, PyObject*) {
#define BIDRN_FIELD_PAIR(type, name) Py_BuildValue("(sn)", #name, static_cast<Py_ssize_t>(offsetof(type, name))),
#define BIDRN_PACK_PAIR(name) BIDRN_FIELD_PAIR(PackArgs, name)
#define BIDRN_CONV_PAIR(name) BIDRN_FIELD_PAIR(ConvArgs, name)
#define BIDRN_QUANTIZE_PAIR(name) BIDRN_FIELD_PAIR(QuantizeArgs, name)
#define BIDRN_POOL_PAIR(name) BIDRN_FIELD_PAIR(PoolArgs, name)
  PyObject* pack_fields[] = {BIDRN_PACK_FIELDS(BIDRN_PACK_PAIR)};
  PyObject* conv_fields[] = {BIDRN_CONV_FIELDS(BIDRN_CONV_PAIR)};
  PyObject* quantize_fields[] = {BIDRN_QUANTIZE_FIELDS(BIDRN_QUANTIZE_PAIR)};
  PyObject* pool_fields[] = {BIDRN_POOL_FIELDS(BIDRN_POOL_PAIR)};
#undef BIDRN_POOL_PAIR
#undef BIDRN_QUANTIZE_PAIR
#undef BIDRN_CONV_PAIR
#undef BIDRN_PACK_PAIR
#undef BIDRN_FIELD_PAIR
  auto as_tuple = [](PyObject** items, size_t count) {
    PyObject* tuple = PyTuple_New(static_cast<Py_ssize_t>(count));
    for (size_t i = 0; i < count; ++i) PyTuple_SET_ITEM(tuple, i, items[i]);
    return tuple;
  };
  constexpr size_t pack_count = sizeof(pack_fields) / sizeof(pack_fields[0]);
  constexpr size_t conv_count = sizeof(conv_fields) / sizeof(conv_fields[0]);
  constexpr size_t quantize_count = sizeof(quantize_fields) / sizeof(quantize_fields[0]);
  constexpr size_t pool_count = sizeof(pool_fields) / sizeof(pool_fields[0]);
  return Py_BuildValue("{s:I,s:(nN),s:(nN),s:(nN),s:(nN)}", "version", kAbiVersion, "PackArgs",
                       static_cast<Py_ssize_t>(sizeof(PackArgs)), as_tuple(pack_fields, pack_count), "ConvArgs",
                       static_cast<Py_ssize_t>(sizeof(ConvArgs)), as_tuple(conv_fields, conv_count),
                       "QuantizeArgs", static_cast<Py_ssize_t>(sizeof(QuantizeArgs)),
                       as_tuple(quantize_fields, quantize_count), "PoolArgs",
                       static_cast<Py_ssize_t>(sizeof(PoolArgs)), as_tuple(pool_fields, pool_count));
}

PyObject* py_supported_isas(PyObject*, PyObject*) {
  const auto sets = supported_sets();
  PyObject* names = PyTuple_New(static_cast<Py_ssize_t>(sets.size()));
  if (!names) return nullptr;
  for (size_t i = 0; i < sets.size(); ++i) PyTuple_SET_ITEM(names, i, PyUnicode_FromString(sets[i]->name));
  return names;
}

PyObject* py_get_isa(PyObject*, PyObject*) { return PyUnicode_FromString(active->name); }

PyObject* py_planes(PyObject*, PyObject*) { return PyLong_FromLongLong(active->planes); }

PyObject* py_native_bf16(PyObject*, PyObject*) { return PyBool_FromLong(native_bf16()); }
PyObject* py_native_int8(PyObject*, PyObject*) { return PyBool_FromLong(native_int8()); }

PyObject* py_get_threading(PyObject*, PyObject*) {
  return PyUnicode_FromString(thread_backend() == ThreadBackend::kOpenMP ? "openmp" : "pool");
}

PyObject* py_set_threading(PyObject*, PyObject* args) {
  const char* name;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  const bool openmp = std::strcmp(name, "openmp") == 0;
  if (!openmp && std::strcmp(name, "pool") != 0) {
    PyErr_Format(PyExc_ValueError, "threading must be openmp or pool, not %s", name);
    return nullptr;
  }
  if (!set_thread_backend(openmp ? ThreadBackend::kOpenMP : ThreadBackend::kPool)) {
    PyErr_SetString(PyExc_ValueError, "no OpenMP runtime is loaded in this process");
    return nullptr;
  }
  Py_RETURN_NONE;
}

PyObject* py_set_isa(PyObject*, PyObject* args) {
  const char* name;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  for (const KernelSet* set : supported_sets())
    if (std::strcmp(set->name, name) == 0) {
      active = set;
      Py_RETURN_NONE;
    }
  PyErr_Format(PyExc_ValueError, "instruction set %s is not supported by this CPU or build", name);
  return nullptr;
}

PyMethodDef methods[] = {
    {"run", py_run, METH_VARARGS, "run(steps, threads): PackArgs, QuantizeArgs, PoolArgs and ConvArgs structs, in order."},
    {"abi_layout", py_abi_layout, METH_NOARGS, "ABI version, sizes and field offsets of the argument structs."},
    {"planes", py_planes, METH_NOARGS, "Words the active kernel set stores per packed word (1 or 2)."},
    {"get_threading", py_get_threading, METH_NOARGS, "Where kernels run in parallel: openmp (the process's team) or pool."},
    {"set_threading", py_set_threading, METH_VARARGS, "Run kernels on the OpenMP team (openmp) or on own threads (pool)."},
    {"supported_isas", py_supported_isas, METH_NOARGS, "Kernel sets this CPU can run, best first."},
    {"get_isa", py_get_isa, METH_NOARGS, "Name of the kernel set in use."},
    {"native_bf16", py_native_bf16, METH_NOARGS, "Whether the CPU has bfloat16 dot-product instructions."},
    {"native_int8", py_native_int8, METH_NOARGS, "Whether the CPU has int8 dot-product instructions (VNNI)."},
    {"set_isa", py_set_isa, METH_VARARGS, "Select a kernel set by name."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_bitkernels",
                          "Packed 1-bit convolution kernels with runtime CPU dispatch.", -1, methods};

}  // namespace
}  // namespace bidrn

PyMODINIT_FUNC PyInit__bitkernels(void) {
  bidrn::active = bidrn::supported_sets().front();
  return PyModule_Create(&bidrn::module_def);
}
