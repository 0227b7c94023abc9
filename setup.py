from setuptools import setup

# Metadata lives in pyproject.toml; this file only wires in the cffi build.
# cffi builds the extension against the stable ABI, so tag the wheel abi3
# (one wheel per platform serves CPython 3.9 and later).
setup(
    cffi_modules=["build_ffi.py:ffibuilder"],
    options={"bdist_wheel": {"py_limited_api": "cp39"}},
)
