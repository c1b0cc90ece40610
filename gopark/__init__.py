"""gopark: Spark's RDD model in plain Python, where code never travels and plans do.

The public names of SPEC.md, nothing else.
"""
from gopark.context import Context
from gopark.errors import ConfigError, FetchFailed, JobError, SerializationError
from gopark.rdd import RDD
from gopark.registry import register_func
from gopark.shared import Accumulator, Broadcast, accumulator

__all__ = ["Context", "RDD", "register_func", "accumulator", "Accumulator", "Broadcast",
           "JobError", "SerializationError", "FetchFailed", "ConfigError"]
__version__ = "0.1.0"
