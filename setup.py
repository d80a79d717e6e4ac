"""The one compiled part of driftline (everything else is in pyproject.toml).

``schemas._bodies`` reads batch events' bodies in C (see its source). It is
optional: where it does not build (no C compiler), driftline installs and
reads every body with the Python reader, which decides the same.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("schemas._bodies", ["schemas/_bodies.c"], optional=True,
                             extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"])])
