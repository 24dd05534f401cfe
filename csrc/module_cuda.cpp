// The Python module `divqat._cuda`: importing it loads the CUDA kernels of every divqat:: op
// (TORCH_LIBRARY_IMPL(divqat, CUDA, ...) in <op>_cuda.cu).
#include <Python.h>

extern "C" {
PyObject* PyInit__cuda(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_cuda", "divqat CUDA kernels (registered under torch.ops.divqat)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
