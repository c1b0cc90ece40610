"""Installs the gopark library, the launcher that runs inside the binary, and the `gopark` command."""
from setuptools import setup

setup(
    name="gopark",
    version="0.1.0",
    description="Spark's RDD model in plain Python: code never travels, plans do.",
    packages=["gopark", "gopark.scheduler", "gopark.io", "launcher"],
    python_requires=">=3.11",
    install_requires=[
        "msgpack>=1.0,<2",
        "pyzmq>=25,<28",
        "pyinstaller>=6.11,<7",      # 6.11: the hash_seed run-time option (build.spec)
        "requests>=2.28,<3",
        # pymesos' own dependencies; pymesos itself is installed with --no-deps
        # (its http-parser dependency does not build on Python 3.11+; see
        # gopark/scheduler/mesos_http.py), so the README's commands add it.
        "six>=1.16,<2",
        "addict>=2.4,<3",
        "kazoo>=2.9,<3",
    ],
    extras_require={"test": ["pytest>=7,<10", "ruff>=0.4", "hypothesis>=6,<7"]},
    data_files=[("share/gopark", ["build.spec"])],
    entry_points={"console_scripts": ["gopark=gopark.cli:main"]},
)
