"""Build divqat: the C++ CPU extension `divqat._C` always, the CUDA extension `divqat._cuda`
when torch has CUDA and a toolkit is found (override with DIVQAT_BUILD_CUDA=0/1).

Install after torch: ``pip install --no-build-isolation -e .``
"""
import glob
import os

from setuptools import find_packages, setup
from torch.utils import cpp_extension

HERE = os.path.dirname(os.path.abspath(__file__))


def _sources(pattern):
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, "csrc", pattern)))


def _want_cuda():
    flag = os.environ.get("DIVQAT_BUILD_CUDA")
    if flag is not None:
        return flag == "1"
    import torch

    return torch.version.cuda is not None and cpp_extension.CUDA_HOME is not None


# No --use_fast_math: fake_quant must match PyTorch bit for bit (no flush-to-zero, exact division).
# scripts/check_cuda.sh compiles with the same flags.
NVCC_FLAGS = ["-O3", "-std=c++17", "--expt-relaxed-constexpr"]
CXX_FLAGS = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno", "-DPy_LIMITED_API=0x03090000"]

ext_modules = [
    cpp_extension.CppExtension(
        "divqat._C",
        [s for s in _sources("*.cpp") if not s.endswith("_cuda.cpp")],
        include_dirs=[os.path.join(HERE, "csrc")],
        extra_compile_args={"cxx": CXX_FLAGS},
        extra_link_args=["-fopenmp"],
        py_limited_api=True,
    )
]
if _want_cuda():
    ext_modules.append(
        cpp_extension.CUDAExtension(
            "divqat._cuda",
            _sources("*.cu") + _sources("*_cuda.cpp"),
            include_dirs=[os.path.join(HERE, "csrc")],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
        )
    )

setup(
    name="divqat",
    version="0.1.0",
    description="DivQAT: quantization-aware training against model extraction, with fused kernels",
    # The Triton kernels live in the top-level folder triton_kernels/ and install as
    # divqat.triton_kernels: no top-level package but divqat (triton_kernels is Triton's own name).
    packages=find_packages(include=["divqat", "divqat.*"]) + ["divqat.triton_kernels"],
    package_dir={"divqat.triton_kernels": "triton_kernels"},
    python_requires=">=3.11",  # tomllib; CI runs 3.11 only, so nothing older is claimed
    install_requires=[
        "torch>=2.4",
        "numpy",
        "tqdm",
        "matplotlib",
        "onnx",
        "onnxruntime",
        "pillow",
    ],
    extras_require={
        "triton": ["triton"],
        "ray": ["ray>=2.40"],  # `divqat experiment --executor ray`
        "art": ["adversarial-robustness-toolbox>=1.20"],
        "test": ["pytest", "pytest-benchmark", "hypothesis", "expecttest", "scikit-learn"],
        "serve": ["starlette", "uvicorn", "httpx", "orjson"],
        "postgres": ["psycopg[binary]>=3.2", "psycopg-pool>=3.2"],  # `divqat serve --db postgresql://...`
        "tensorboard": ["tensorboard"],  # --tensorboard DIR of divqat train and attack
    },
    entry_points={"console_scripts": ["divqat=divqat.cli:main"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": cpp_extension.BuildExtension},
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
