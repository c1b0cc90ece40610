"""gopark: Spark's RDD model in plain Python, where code never travels and plans do.

The public names of SPEC.md, and the error types an app may catch (all are GoparkError).
"""
from gopark.context import Context
from gopark.errors import (
           ConfigError,
           FetchFailed,
           FunctionNotSendable,
           GoparkError,
           InputNotFound,
           InputUnavailable,
           JobError,
           OutputExists,
           OutputNotWritable,
           SerializationError,
)
from gopark.rdd import RDD
from gopark.registry import register_func
from gopark.shared import Accumulator, Broadcast, accumulator

__all__ = ["Context", "RDD", "register_func", "accumulator", "Accumulator", "Broadcast",
           "GoparkError", "JobError", "SerializationError", "FetchFailed", "FunctionNotSendable", "ConfigError",
           "InputNotFound", "InputUnavailable", "OutputExists", "OutputNotWritable"]
__version__ = "0.1.0"
