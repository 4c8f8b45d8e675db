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
T* as_pointer(unsigned long long address) {
  return reinterpret_cast<T*>(static_cast<uintptr_t>(address));
}

constexpr Py_ssize_t kPackDims = 9;
constexpr Py_ssize_t kConvDims = 24;

bool fill_pack(PyObject* dims_tuple, unsigned long long input, unsigned long long threshold,
               unsigned long long packed, PackArgs* a) {
  int64_t d[kPackDims];
  if (!parse_dims(dims_tuple, d, kPackDims, "pack dims")) return false;
  *a = PackArgs{as_pointer<const float>(input), as_pointer<const float>(threshold), as_pointer<uint64_t>(packed),
                nullptr, d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]};
  return true;
}

bool fill_conv(PyObject* dims_tuple, unsigned long long packed, unsigned long long weights,
               unsigned long long tap_sums, unsigned long long multiplier, unsigned long long addend,
               unsigned long long sample_scale, unsigned long long out, ConvArgs* a) {
  int64_t d[kConvDims];
  if (!parse_dims(dims_tuple, d, kConvDims, "conv dims")) return false;
  *a = ConvArgs{as_pointer<const uint64_t>(packed), as_pointer<const uint64_t>(weights),
                as_pointer<const int32_t>(tap_sums), as_pointer<const float>(multiplier),
                as_pointer<const float>(addend), as_pointer<const float>(sample_scale), as_pointer<float>(out),
                d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14],
                d[15], d[16], d[17], d[18], d[19], d[20], d[21], d[22], d[23]};
  if (a->out_channels_padded % kOcChunk != 0) {
    PyErr_SetString(PyExc_ValueError, "out_channels_padded must be a multiple of 32");
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
  unsigned long long input, threshold, packed, sample_mean_abs;
  PyObject* dims;
  int threads;
  if (!PyArg_ParseTuple(args, "KKKKO!i", &input, &threshold, &packed, &sample_mean_abs, &PyTuple_Type, &dims,
                        &threads))
    return nullptr;
  PackArgs a;
  if (!fill_pack(dims, input, threshold, packed, &a)) return nullptr;
  Py_BEGIN_ALLOW_THREADS run_pack(a, as_pointer<float>(sample_mean_abs), threads);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject* py_conv(PyObject*, PyObject* args) {
  unsigned long long packed, weights, tap_sums, multiplier, addend, sample_scale, out;
  PyObject* dims;
  int threads;
  if (!PyArg_ParseTuple(args, "KKKKKKKO!i", &packed, &weights, &tap_sums, &multiplier, &addend, &sample_scale,
                        &out, &PyTuple_Type, &dims, &threads))
    return nullptr;
  ConvArgs a;
  if (!fill_conv(dims, packed, weights, tap_sums, multiplier, addend, sample_scale, out, &a)) return nullptr;
  Py_BEGIN_ALLOW_THREADS run_conv(a, threads);
  Py_END_ALLOW_THREADS Py_RETURN_NONE;
}

PyObject* py_pack_conv(PyObject*, PyObject* args) {
  unsigned long long input, threshold, packed, sample_scale, weights, tap_sums, multiplier, addend, out;
  PyObject *pack_dims, *conv_dims;
  int threads;
  if (!PyArg_ParseTuple(args, "KKKKKKKKKO!O!i", &input, &threshold, &packed, &sample_scale, &weights, &tap_sums,
                        &multiplier, &addend, &out, &PyTuple_Type, &pack_dims, &PyTuple_Type, &conv_dims, &threads))
    return nullptr;
  PackArgs p;
  ConvArgs c;
  if (!fill_pack(pack_dims, input, threshold, packed, &p)) return nullptr;
  if (!fill_conv(conv_dims, packed, weights, tap_sums, multiplier, addend, sample_scale, out, &c)) return nullptr;
  Py_BEGIN_ALLOW_THREADS run_pack(p, as_pointer<float>(sample_scale), threads);
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
    {"pack", py_pack, METH_VARARGS,
     "pack(input, threshold, packed, sample_mean_abs, dims, threads): pack channels-last floats to sign bits."},
    {"conv", py_conv, METH_VARARGS,
     "conv(packed, weights, tap_sums, multiplier, addend, sample_scale, out, dims, threads): packed conv."},
    {"pack_conv", py_pack_conv, METH_VARARGS, "pack_conv(...): pack then conv in one call."},
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
