// CPython entry points of bidrn.deploy._bitkernels, with runtime CPU dispatch.
//
// The interface is deliberately small and free of torch and numpy headers: Python passes raw data
// pointers of tensors it has checked (dtype, device, contiguity, sizes) as integers and the
// geometry as tuples of integers (see bidrn/deploy/kernels.py). The GIL is released while kernels run.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <cstring>
#include <vector>

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

bool parse_dims(PyObject* tuple, int64_t* out, Py_ssize_t count, const char* what) {
  if (!PyTuple_Check(tuple) || PyTuple_GET_SIZE(tuple) != count) {
    PyErr_Format(PyExc_ValueError, "%s must be a tuple of %zd integers", what, count);
    return false;
  }
  for (Py_ssize_t i = 0; i < count; ++i) {
    out[i] = PyLong_AsLongLong(PyTuple_GET_ITEM(tuple, i));
    if (out[i] == -1 && PyErr_Occurred()) return false;
  }
  return true;
}

template <typename T>
T* as_pointer(int64_t address) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(address));
}

constexpr Py_ssize_t kPackPointers = 4;   // input, threshold, packed, sample_mean_abs (out)
constexpr Py_ssize_t kPackDims = 12;      // see PackArgs, in order
constexpr Py_ssize_t kConvPointers = 12;  // packed, weights, tap_sums, multiplier, addend, sample_scale, out,
                                          // post_slope, residual, post_scale, post_shift, post_clamp
constexpr Py_ssize_t kConvDims = 28;      // see ConvArgs, in order

bool fill_pack(PyObject* pointer_tuple, PyObject* dims_tuple, PackArgs* a, float** sample_mean_abs) {
  int64_t p[kPackPointers], d[kPackDims];
  if (!parse_dims(pointer_tuple, p, kPackPointers, "pack pointers") || !parse_dims(dims_tuple, d, kPackDims, "pack dims"))
    return false;
  *a = PackArgs{as_pointer<const float>(p[0]), as_pointer<const float>(p[1]), as_pointer<uint64_t>(p[2]), nullptr,
                d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11]};
  *sample_mean_abs = as_pointer<float>(p[3]);
  return true;
}

bool fill_conv(PyObject* pointer_tuple, PyObject* dims_tuple, ConvArgs* a) {
  int64_t p[kConvPointers], d[kConvDims];
  if (!parse_dims(pointer_tuple, p, kConvPointers, "conv pointers") || !parse_dims(dims_tuple, d, kConvDims, "conv dims"))
    return false;
  *a = ConvArgs{as_pointer<const uint64_t>(p[0]), as_pointer<const uint64_t>(p[1]), as_pointer<const int32_t>(p[2]),
                as_pointer<const float>(p[3]), as_pointer<const float>(p[4]), as_pointer<const float>(p[5]),
                as_pointer<float>(p[6]),
                d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
                d[15], d[16], d[17], d[18], d[19], d[20], d[21], d[22], d[23],
                as_pointer<const float>(p[7]), as_pointer<const float>(p[8]), as_pointer<const float>(p[9]),
                as_pointer<const float>(p[10]), d[24], d[25], d[26], d[27], as_pointer<const float>(p[11])};
  if (a->out_channels_padded % kOcChunk != 0) {
    PyErr_SetString(PyExc_ValueError, "out_channels_padded must be a multiple of 32");
    return false;
  }
  if (a->post_scale && !a->post_shift) {
    PyErr_SetString(PyExc_ValueError, "post_scale needs post_shift");
    return false;
  }
  return true;
}

// Pack the input; zero the buffer's border; optionally write mean |x| per sample.
void run_pack(PackArgs a, float* sample_mean_abs, int threads) {
  std::vector<double> row_sums;
  if (sample_mean_abs) {
    row_sums.assign(a.batch * a.in_h, 0.0);
    a.row_abs_sum = row_sums.data();
  }
  const int64_t row_words = a.buf_w * a.words;
  for (int64_t n = 0; n < a.batch; ++n) {
    uint64_t* image = a.packed + n * a.buf_h * row_words;
    std::memset(image, 0, sizeof(uint64_t) * a.buf_top * row_words);
    const int64_t bottom = a.buf_top + a.in_h;
    std::memset(image + bottom * row_words, 0, sizeof(uint64_t) * (a.buf_h - bottom) * row_words);
    for (int64_t h = a.buf_top; h < bottom; ++h) {
      uint64_t* row = image + h * row_words;
      std::memset(row, 0, sizeof(uint64_t) * a.buf_left * a.words);
      const int64_t right = (a.buf_left + a.in_w) * a.words;
      std::memset(row + right, 0, sizeof(uint64_t) * (row_words - right));
    }
  }
  const PackRowsFn pack_rows = active->pack_rows;
  parallel_for(a.batch * a.in_h, threads, [&](int64_t b, int64_t e) { pack_rows(a, b, e); });
  if (sample_mean_abs) {
    const double count = static_cast<double>(a.in_h * a.in_w * a.channels);
    for (int64_t n = 0; n < a.batch; ++n) {
      double total = 0.0;
      for (int64_t h = 0; h < a.in_h; ++h) total += row_sums[n * a.in_h + h];
      sample_mean_abs[n] = static_cast<float>(total / count);
    }
  }
}

void run_conv(const ConvArgs& a, int threads) {
  const ConvJobsFn conv_jobs = active->conv_jobs;
  const int64_t jobs = a.batch * a.out_h * (a.out_channels_padded / kOcChunk);
  parallel_for(jobs, threads, [&](int64_t b, int64_t e) { conv_jobs(a, b, e); });
}

PyObject* py_pack(PyObject*, PyObject* args) {
  PyObject *pointers, *dims;
  int threads;
  if (!PyArg_ParseTuple(args, "O!O!i", &PyTuple_Type, &pointers, &PyTuple_Type, &dims, &threads)) return nullptr;
  PackArgs a;
  float* sample_mean_abs;
  if (!fill_pack(pointers, dims, &a, &sample_mean_abs)) return nullptr;
  Py_BEGIN_ALLOW_THREADS run_pack(a, sample_mean_abs, threads);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject* py_conv(PyObject*, PyObject* args) {
  PyObject *pointers, *dims;
  int threads;
  if (!PyArg_ParseTuple(args, "O!O!i", &PyTuple_Type, &pointers, &PyTuple_Type, &dims, &threads)) return nullptr;
  ConvArgs a;
  if (!fill_conv(pointers, dims, &a)) return nullptr;
  Py_BEGIN_ALLOW_THREADS run_conv(a, threads);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject* py_pack_conv(PyObject*, PyObject* args) {
  PyObject *pack_pointers, *pack_dims, *conv_pointers, *conv_dims;
  int threads;
  if (!PyArg_ParseTuple(args, "O!O!O!O!i", &PyTuple_Type, &pack_pointers, &PyTuple_Type, &pack_dims, &PyTuple_Type,
                        &conv_pointers, &PyTuple_Type, &conv_dims, &threads))
    return nullptr;
  PackArgs p;
  ConvArgs c;
  float* sample_mean_abs;
  if (!fill_pack(pack_pointers, pack_dims, &p, &sample_mean_abs) || !fill_conv(conv_pointers, conv_dims, &c))
    return nullptr;
  Py_BEGIN_ALLOW_THREADS run_pack(p, sample_mean_abs, threads);
  run_conv(c, threads);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject* py_supported_isas(PyObject*, PyObject*) {
  const auto sets = supported_sets();
  PyObject* names = PyTuple_New(static_cast<Py_ssize_t>(sets.size()));
  if (!names) return nullptr;
  for (size_t i = 0; i < sets.size(); ++i) PyTuple_SET_ITEM(names, i, PyUnicode_FromString(sets[i]->name));
  return names;
}

PyObject* py_get_isa(PyObject*, PyObject*) { return PyUnicode_FromString(active->name); }

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
    {"pack", py_pack, METH_VARARGS, "pack(pointers, dims, threads): pack channels-last floats to sign bits."},
    {"conv", py_conv, METH_VARARGS, "conv(pointers, dims, threads): packed convolution with epilogue."},
    {"pack_conv", py_pack_conv, METH_VARARGS,
     "pack_conv(pack_pointers, pack_dims, conv_pointers, conv_dims, threads): pack, then convolve."},
    {"supported_isas", py_supported_isas, METH_NOARGS, "Kernel sets this CPU can run, best first."},
    {"get_isa", py_get_isa, METH_NOARGS, "Name of the kernel set in use."},
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
