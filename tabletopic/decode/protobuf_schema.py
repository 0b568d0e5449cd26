"""Registered .proto texts → message descriptors, per schema id: the file and its imports (the registry's
references, followed recursively) are compiled by grpcio-tools' protoc in a subprocess into a
FileDescriptorSet, loaded into a DescriptorPool of their own, and the message is picked by the record's
message-index path.

protoc runs in a subprocess with a deadline: in-process it writes its errors to the C-level stderr, where
they cannot be captured, and nothing may hang the writer. The well-known types (google/protobuf/*.proto)
are not references: producers import them without registering them, so they ship with grpcio-tools.

A schema that cannot be compiled (a syntax error, an import nobody registered, a reference that names no
version) is unreadable: its records are dead letters, never a crash. Unreadable ids are remembered.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import grpc_tools
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor

from tabletopic.exceptions import SourceUnavailable
from tabletopic.kafka.registry import RegisteredSchema, RegisteredSchemas, SchemaReference, UnknownReference

COMPILE_TIMEOUT_S = 30.0
# A schema importing a reference nobody registered yet is asked again after this long (it may be registered).
MISSING_REFERENCE_RETRY_S = 60.0
MAX_REFERENCES = 256  # files one schema may import, at every depth
_ROOT = "tabletopic_schema.proto"  # the registered schema's own file name (a reference never takes it)


class UnreadableProtobuf(Exception):
    """The schema under this id is not a .proto this writer can compile: its records are dead letters.
    `lasting`: false when a later registration may make it readable (an import not registered yet)."""

    def __init__(self, schema_id: int, reason: str, lasting: bool = True) -> None:
        super().__init__(f"the Protobuf schema cannot be read: {reason}")
        self.schema_id = schema_id
        self.lasting = lasting


class ProtocUnavailable(SourceUnavailable):
    """protoc could not run to its answer (killed, out of time, not started): transient, the table retries."""


class UnknownMessageIndex(LookupError):
    """The record's message-index path names no message of its schema's file."""


@dataclass(frozen=True)
class CompiledSchema:
    pool: descriptor_pool.DescriptorPool
    root: descriptor_pb2.FileDescriptorProto  # the registered file, for walking message indexes

    def message(self, indexes: tuple[int, ...]) -> Descriptor:
        """The message at `indexes` (top-level, then nested); UnknownMessageIndex if there is none."""
        if not indexes:
            raise UnknownMessageIndex("an empty message-index path")
        names: list[str] = []
        candidates = self.root.message_type
        for depth, index in enumerate(indexes):
            if index >= len(candidates):
                raise UnknownMessageIndex(f"message index {list(indexes)}: level {depth} has {len(candidates)} "
                                          f"message types, not {index + 1}")
            names.append(candidates[index].name)
            candidates = candidates[index].nested_type
        full = ".".join([self.root.package, *names]) if self.root.package else ".".join(names)
        return self.pool.FindMessageTypeByName(full)


class ProtobufSchemas:
    """Compiled schemas by id, shared by the decoders of one registry."""

    def __init__(self, registry: RegisteredSchemas) -> None:
        self._registry = registry
        self._compiled: dict[int, CompiledSchema] = {}
        self._unreadable: dict[int, tuple[UnreadableProtobuf, float]] = {}  # and since when (monotonic)
        self._lock = threading.Lock()

    @property
    def registry(self) -> RegisteredSchemas:
        return self._registry

    def compiled(self, schema_id: int) -> CompiledSchema:
        """Raises UnknownSchemaId, RegistryUnavailable (retry) or UnreadableProtobuf."""
        compiled = self._compiled.get(schema_id)
        if compiled is not None:
            return compiled
        with self._lock:
            known = self._unreadable.get(schema_id)
            if known is not None and (known[0].lasting or time.monotonic() - known[1] < MISSING_REFERENCE_RETRY_S):
                raise known[0]
            if schema_id not in self._compiled:
                registered = self._registry.registered(schema_id)
                try:
                    files = self._files(registered)
                    self._compiled[schema_id] = _load(compile_files(files))
                except UnreadableProto as exc:
                    self._unreadable[schema_id] = (UnreadableProtobuf(schema_id, str(exc)), time.monotonic())
                    raise self._unreadable[schema_id][0] from None
                except UnknownReference as exc:
                    unreadable = UnreadableProtobuf(schema_id, str(exc), lasting=False)
                    self._unreadable[schema_id] = (unreadable, time.monotonic())
                    raise unreadable from None
            return self._compiled[schema_id]

    def _files(self, registered: RegisteredSchema) -> dict[str, str]:
        """The registered file and every file it imports, by import name (root first)."""
        if registered.schema_type != "PROTOBUF":
            raise UnreadableProto(f"the registry says it is {registered.schema_type}, not PROTOBUF")
        files = {_ROOT: registered.text}
        seen: dict[str, SchemaReference] = {}
        todo = list(registered.references)
        while todo:
            reference = todo.pop()
            _check_import_name(reference.name)
            if reference.name in seen:
                if seen[reference.name] != reference:
                    raise UnreadableProto(f"import {reference.name!r} is referenced as two different schemas")
                continue
            seen[reference.name] = reference
            if len(seen) > MAX_REFERENCES:
                raise UnreadableProto(f"more than {MAX_REFERENCES} referenced files")
            imported = self._registry.registered_version(reference.subject, reference.version)
            if imported.schema_type != "PROTOBUF":
                raise UnreadableProto(f"import {reference.name!r} is {imported.schema_type}, not PROTOBUF")
            files[reference.name] = imported.text
            todo.extend(imported.references)
        return files


class UnreadableProto(ValueError):
    """protoc refused the files, or they cannot be handed to it."""


def _check_import_name(name: str) -> None:
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or "\\" in name or "\x00" in name or name == _ROOT:
        raise UnreadableProto(f"reference name {name!r} is not a relative import path")


def compile_files(files: dict[str, str]) -> descriptor_pb2.FileDescriptorSet:
    """`files` (import name → .proto text; the first is the one compiled, with its imports) as protoc's
    FileDescriptorSet, imports first; UnreadableProto with protoc's own message if it refuses them,
    ProtocUnavailable if it could not run to an answer."""
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    root = next(iter(files))
    with tempfile.TemporaryDirectory(prefix="tabletopic-proto-") as scratch:
        for name, text in files.items():
            path = Path(scratch, name)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        out = Path(scratch, "tabletopic.descriptors")
        command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{scratch}", f"-I{well_known}",
                   f"--descriptor_set_out={out}", "--include_imports", root]
        try:
            done = subprocess.run(command, cwd=scratch, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise ProtocUnavailable(f"protoc took more than {COMPILE_TIMEOUT_S:.0f} s") from None
        except OSError as exc:
            raise ProtocUnavailable(f"protoc could not start: {exc}") from None
        if done.returncode < 0:
            raise ProtocUnavailable(f"protoc was killed by signal {-done.returncode}")
        if done.returncode != 0:
            message = (done.stderr or done.stdout).strip().replace(scratch + "/", "")
            raise UnreadableProto(f"protoc: {message[:1000]}")
        descriptors = descriptor_pb2.FileDescriptorSet()
        descriptors.ParseFromString(out.read_bytes())
        return descriptors


def _load(descriptors: descriptor_pb2.FileDescriptorSet) -> CompiledSchema:
    pool = descriptor_pool.DescriptorPool()
    root = None
    for file in descriptors.file:  # protoc lists imports before the files that import them
        try:
            pool.Add(file)
        except Exception as exc:  # what protoc accepts, the pool should too; if not, the schema is unreadable
            raise UnreadableProto(f"{file.name}: {exc}") from None
        if file.name == _ROOT:
            root = file
    assert root is not None, "protoc always includes the file it compiled"
    return CompiledSchema(pool, root)
