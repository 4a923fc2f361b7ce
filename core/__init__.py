"""dicombox core: the minimal host that every service plugin stands on.

The core knows no service and no hardware: it finds plugins through the ``dicombox``
entry-point group and talks to them only through the hooks in ``hookspecs``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dicombox")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

from dicombox.core.hookspecs import hookimpl  # noqa: E402  (the one name plugins need first)

__all__ = ["__version__", "hookimpl"]
