"""The error types of gopark: tell errors apart by type, never by message."""
from __future__ import annotations


class GoparkError(Exception):
    """Base class of every error gopark raises on purpose."""


class ConfigError(GoparkError, ValueError):
    """Bad input to gopark's configuration: a master string, an option, a --conf file. ``option``: the
    option whose value it is about, if one."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message)
        self.option = option


class InputNotFound(GoparkError, FileNotFoundError):
    """A path given to gopark (textFile, --conf) that does not exist."""


class OutputExists(GoparkError, FileExistsError):
    """saveAsTextFile into a folder that is not empty, without overwrite=True."""


class OutputNotWritable(GoparkError, OSError):
    """saveAsTextFile (or checkpoint) into a path where no folder can be made or emptied (under a file, no
    permission)."""


class InputUnavailable(GoparkError, OSError):
    """Something gopark was pointed at that cannot be reached (a MooseFS or Mesos master that is down)."""


class SerializationError(GoparkError, TypeError):
    """A value that is not gopark data (SPEC section 3) reached the wire.

    The message names the type and the operation that tried to send it.
    """


class FunctionNotSendable(GoparkError, TypeError):
    """A function given to an RDD's method or action that gopark cannot send by name: a lambda, a closure, an
    unregistered function, a method; or one a worker could not import (registered in ``python -c``). Raised
    at the call that received it; a TypeError, as SPEC section 2 says."""


class FetchFailed(GoparkError):
    """A reducer could not read one map output; the map stage must run again."""

    def __init__(self, shuffle_id: int, map_id: int, reduce_id: int, host: str, reason: str = "",
                 missing: list[tuple[int, str]] | None = None) -> None:
        super().__init__(f"fetch of shuffle {shuffle_id} map {map_id} reduce {reduce_id} "
                         f"from {host} failed: {reason}")
        self.shuffle_id = shuffle_id
        self.map_id = map_id
        self.reduce_id = reduce_id
        self.host = host
        self.reason = reason
        # every (map, path) found missing at once, so they are all recomputed in one round
        self.missing = missing or [(map_id, "")]


class JobError(GoparkError):
    """An action failed: a task kept failing after its retries.

    ``remote_type``, ``remote_message`` and ``remote_traceback`` describe the
    exception the task raised where it ran; ``func_name`` is the registered name
    of the function that raised it (or of the operation, when none did).
    """

    def __init__(self, message: str, remote_type: str = "", remote_message: str = "",
                 remote_traceback: str = "", func_name: str | None = None) -> None:
        super().__init__(message)
        self.remote_type = remote_type
        self.remote_message = remote_message
        self.remote_traceback = remote_traceback
        self.func_name = func_name

    def __str__(self) -> str:
        text = super().__str__()
        if self.remote_traceback:
            text += "\n--- remote traceback ---\n" + self.remote_traceback.rstrip()
        return text


class TaskSerializationError(JobError, SerializationError):
    """A task failed because it produced a value that is not gopark data.

    Both ``except JobError`` and ``except SerializationError`` catch it.
    """


def job_error(message: str, remote_type: str, remote_message: str, remote_traceback: str,
              func_name: str | None) -> JobError:
    """The JobError to raise for a task that failed with ``remote_type``."""
    cls = TaskSerializationError if remote_type == "SerializationError" else JobError
    return cls(message, remote_type, remote_message, remote_traceback, func_name)


class Terminated(SystemExit):
    """The driver got SIGTERM or SIGHUP: leave, stopping the Context on the way (exit status 128 + signal).

    Not a task failure: a task running in the driver (local mode) lets it through.
    """
