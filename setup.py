"""The compiled parts of driftline (everything else is in pyproject.toml).

Two hot loops of the monitor are in C (see their sources):
``schemas._bodies`` reads batch events' bodies, ``streams.drift._column``
summarises a window's numeric columns (moments, bin counts and sums). Both
are optional: where they do not build (no C compiler), driftline installs
and runs the Python and numpy code they mirror, which gives the same results.
"""

from setuptools import Extension, setup

# no fused multiply-add: a value's bin must come from the same double arithmetic numpy does
FLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-ffp-contract=off"]

setup(ext_modules=[Extension("schemas._bodies", ["schemas/_bodies.c"], optional=True, extra_compile_args=FLAGS),
                   Extension("streams.drift._column", ["streams/drift/_column.c"], optional=True,
                             extra_compile_args=FLAGS)])
