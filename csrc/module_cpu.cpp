// The Python module `divqat._C`. Importing it loads this library, whose static initializers
// register the divqat:: operators: each op's schema and CPU kernel live beside each other in
// <op>_cpu.cpp (TORCH_LIBRARY_FRAGMENT / TORCH_LIBRARY_IMPL), so an op is self-contained.
#include <Python.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "divqat CPU kernels (registered under torch.ops.divqat)", -1, nullptr};
  return PyModule_Create(&module_def);
}
}
