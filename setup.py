"""Installs the symbolication server (SymServer, DiskCache, quickstart) and its client, symbolicate."""

from setuptools import Extension, find_packages, setup

setup(
    name="symbolication-server",
    version="1.0.0",
    description="Self-hosted symbolication of Firefox stacks (SymServer + DiskCache + memcached)",
    python_requires=">=3.11",
    packages=find_packages(include=["symcommon", "symserver", "diskcache", "symclient"]),
    py_modules=["quickstart"],
    package_data={"symserver": ["ui.html"]},
    # The .sym scan of a cold answer, compiled (diskcache/_symscan.c): 4x the regex scan.
    # Optional: where no C compiler is, the install goes on and the regex scan is used.
    ext_modules=[Extension("diskcache._symscan", ["diskcache/_symscan.c"], optional=True,
                           extra_compile_args=["-O2"])],
    install_requires=[
        "tornado>=6.3",
        "python-memcached>=1.59",
        "psutil>=5.9",
        "requests>=2.31",
        "prometheus-client>=0.17",
        "zstandard>=0.22",
        "orjson>=3.9",
    ],
    extras_require={"test": ["pytest>=7.4", "hypothesis>=6.80"], "bench": ["symbolic>=12"]},
    entry_points={
        "console_scripts": [
            "symserver=symserver.__main__:main",
            "diskcache=diskcache.__main__:main",
            "symbolication-quickstart=quickstart:main",
            "symbolicate=symclient.cli:main",
        ]
    },
)
