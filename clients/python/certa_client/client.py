"""A thin, typed wrapper over certa's Reasoning service (and the Admin stub for operators).

Submit and Watch yield :class:`Event` objects; every other call returns the reply message of
the generated stubs (``certa_client.pb``).  Calls that fail raise :class:`CertaError` with the
gRPC code, the server's message and the raw ``grpc-status-details-bin`` trailer (a packed
google.rpc.Status: ``grpc_status.rpc_status.from_call`` of grpcio-status decodes it).

A program that FAILED is not an error: its stream ends normally after a ``finished`` event
whose ``result.reason`` is ``FINISH_REASON_FAILED`` (see :attr:`Event.failed`).
"""

from __future__ import annotations

import dataclasses
from typing import Iterator, List, Optional, Sequence, Tuple

import grpc

from certa_client._proto.certa.v1 import admin_pb2_grpc
from certa_client._proto.certa.v1 import common_pb2
from certa_client._proto.certa.v1 import reasoning_pb2
from certa_client._proto.certa.v1 import reasoning_pb2_grpc

_ALGORITHMS = {
    None: common_pb2.ALGORITHM_UNSPECIFIED,
    "cot": common_pb2.ALGORITHM_COT,
    "sc": common_pb2.ALGORITHM_SC,
}
_PRIORITIES = {
    None: common_pb2.PRIORITY_UNSPECIFIED,
    "low": common_pb2.PRIORITY_LOW,
    "normal": common_pb2.PRIORITY_NORMAL,
    "high": common_pb2.PRIORITY_HIGH,
}
_STATES = {
    None: common_pb2.PROGRAM_STATE_UNSPECIFIED,
    "queued": common_pb2.PROGRAM_STATE_QUEUED,
    "running": common_pb2.PROGRAM_STATE_RUNNING,
    "finished": common_pb2.PROGRAM_STATE_FINISHED,
    "cancelled": common_pb2.PROGRAM_STATE_CANCELLED,
    "failed": common_pb2.PROGRAM_STATE_FAILED,
}


class CertaError(Exception):
    """A call that failed: code (grpc.StatusCode), message, and the raw status details."""

    def __init__(self, code: grpc.StatusCode, message: str, details_bin: bytes = b""):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details_bin = details_bin


def _error(e: grpc.RpcError) -> CertaError:
    details_bin = b""
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    for key, value in trailers or ():
        if key == "grpc-status-details-bin":
            details_bin = value
    return CertaError(e.code(), e.details() or "", details_bin)


@dataclasses.dataclass(frozen=True)
class Event:
    """One program event.  ``seq`` is the program's event number, the same on every stream
    of the program (Submit, a retried Submit, Watch): de-duplicate on it."""

    seq: int
    kind: str                      # "accepted", "progress" or "finished"
    program_id: str
    message: reasoning_pb2.ProgramEvent

    @property
    def finished(self) -> bool:
        return self.kind == "finished"

    @property
    def failed(self) -> bool:
        return (self.kind == "finished" and
                self.message.finished.result.reason == common_pb2.FINISH_REASON_FAILED)

    @property
    def answer(self) -> str:
        if self.kind == "progress":
            return self.message.progress.answer
        if self.kind == "finished":
            return self.message.finished.result.answer
        return ""


def _event(m: reasoning_pb2.ProgramEvent) -> Event:
    kind = m.WhichOneof("event") or ""
    sub = getattr(m, kind) if kind else None
    return Event(seq=m.seq, kind=kind, program_id=getattr(sub, "program_id", ""), message=m)


class Client:
    """A channel to certad with a tenant's API key.

    >>> with Client("127.0.0.1:7700", api_key="certa_...") as c:
    ...     for ev in c.submit("What is 2+2?", algorithm="sc", n=3):
    ...         print(ev.seq, ev.kind, ev.answer)
    """

    def __init__(self, target: str = "127.0.0.1:7700", api_key: Optional[str] = None, *,
                 channel: Optional[grpc.Channel] = None, timeout: float = 30.0):
        self._own = channel is None
        self.channel = channel if channel is not None else grpc.insecure_channel(target)
        self.timeout = timeout
        self._md: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {api_key}"),) if api_key else ())
        self.reasoning = reasoning_pb2_grpc.ReasoningStub(self.channel)
        self.admin = admin_pb2_grpc.AdminStub(self.channel)

    def close(self) -> None:
        if self._own:
            self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _unary(self, method, request, timeout: Optional[float]):
        try:
            return method(request, timeout=timeout or self.timeout, metadata=self._md)
        except grpc.RpcError as e:
            raise _error(e) from None

    def _stream(self, call) -> Iterator[Event]:
        try:
            for m in call:
                yield _event(m)
        except grpc.RpcError as e:
            raise _error(e) from None
        finally:
            call.cancel()   # a no-op once the stream ended; closing never cancels a program

    def submit(self, problem: str, *, algorithm: Optional[str] = None, n: int = 0,
               token_budget: int = 0, priority: Optional[str] = None,
               deadline_unix_ms: int = 0, idempotency_key: str = "", model: str = "",
               temperature: float = 0.0, top_p: float = 0.0,
               timeout: Optional[float] = None) -> Iterator[Event]:
        """Submits a program and yields its events up to ``finished``.  Leaving the loop
        early detaches (the program goes on; follow it with :meth:`watch`)."""
        spec = common_pb2.ProgramSpec(
            problem=problem, algorithm=_ALGORITHMS[algorithm], n=n,
            token_budget=token_budget, priority=_PRIORITIES[priority],
            deadline_unix_ms=deadline_unix_ms, idempotency_key=idempotency_key, model=model,
            sampling=common_pb2.SamplingParams(temperature=temperature, top_p=top_p))
        call = self.reasoning.Submit(reasoning_pb2.SubmitRequest(program=spec),
                                     timeout=timeout, metadata=self._md)
        return self._stream(call)

    def watch(self, program_id: str, *, timeout: Optional[float] = None) -> Iterator[Event]:
        """Yields the events of an existing program from now on (its ``finished`` event
        alone when it has ended)."""
        call = self.reasoning.Watch(reasoning_pb2.WatchRequest(program_id=program_id),
                                    timeout=timeout, metadata=self._md)
        return self._stream(call)

    def get(self, program_id: str, *, timeout: Optional[float] = None) -> common_pb2.Program:
        return self._unary(self.reasoning.Get, reasoning_pb2.GetRequest(program_id=program_id),
                           timeout)

    def cancel(self, program_id: str, *, timeout: Optional[float] = None) -> int:
        """Cancels a program; returns its state after the call (a ProgramState value)."""
        r = self._unary(self.reasoning.Cancel,
                        reasoning_pb2.CancelRequest(program_id=program_id), timeout)
        return r.state

    def list(self, state: Optional[str] = None, *, page_size: int = 0,
             timeout: Optional[float] = None) -> Iterator[common_pb2.Program]:
        """Yields the tenant's programs, newest first, following page tokens."""
        token = ""
        while True:
            r = self._unary(self.reasoning.List, reasoning_pb2.ListRequest(
                state=_STATES[state], page_size=page_size, page_token=token), timeout)
            yield from r.programs
            if not r.next_page_token:
                return
            token = r.next_page_token

    def list_models(self, *, timeout: Optional[float] = None) -> List[reasoning_pb2.Model]:
        """The names ProgramSpec.model accepts, with how many workers serve each."""
        return list(self._unary(self.reasoning.ListModels,
                                reasoning_pb2.ListModelsRequest(), timeout).models)


def final(events: Sequence[Event]) -> Optional[Event]:
    """The finished event of a list of events, or None."""
    for ev in reversed(events):
        if ev.finished:
            return ev
    return None
