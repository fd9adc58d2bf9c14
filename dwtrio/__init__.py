"""dwtrio: a self-hosted Durable Workflow server on Trio, Postgres and Redis."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dwtrio")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
