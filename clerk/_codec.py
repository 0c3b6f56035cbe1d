"""One codec for every message: multipart frames in, typed frozen dataclasses out.

Wire format (all frames bytes)::

    frame 0   b"CLERK" + one byte protocol version (currently 1)
    frame 1   the message kind, ASCII (``join``, ``heartbeat``, ... see MESSAGE_KINDS)
    frame 2   the body: one JSON object holding the dataclass fields (UTF-8)

Decoding is strict and never raises anything but :class:`DecodeError`: a wrong frame count, an
oversized message, a foreign magic or version, an unknown kind, invalid or too deeply nested
JSON (including ``NaN``/``Infinity`` and numbers that overflow to infinity), a missing, extra or
mistyped field (``True`` is not an ``int``; an ``int`` is accepted as a ``float``), an integer
beyond 64 bits, an over-long string or list, a string that is not valid Unicode (a lone
surrogate such as ``"\\ud800"`` is legal JSON text but cannot be encoded as UTF-8). Each error
carries a short ``reason`` used as a counter key by the node.

Encoding applies the same validation, so whatever encodes also decodes: a message another node
would drop as malformed (state nested too deep, a non-string object key that ``json.dumps``
would silently turn into a string, an integer beyond 64 bits...) is an :class:`EncodeError` at
the sender, naming the field. There is no pickle anywhere: task state travels as JSON, and state
that JSON cannot carry (a set, an object, NaN) is an :class:`EncodeError` naming the field.
A field marked ``OMIT_NONE`` (:mod:`clerk._messages`) is left out of the body while it is
None: a node of an older build, which refuses fields it does not know, reads it as before.

Decoding is on every message's path, so its checks are arranged to cost little without
checking less (``tools/bench_codec.py``):

* one ``json.JSONDecoder`` for every message (``json.loads`` with hooks builds a new decoder
  and scanner per call), and its scanner called directly (:func:`decode_body`): a body that
  is not exactly one value goes through ``decode`` itself, which accepts or refuses it;
* a batch's messages (:mod:`clerk._batch`) go through :func:`decode_body` only: the header
  and size checks :func:`decode` makes are the batch's, made once;
* a lone surrogate can only come from a ``\\u`` escape (the UTF-8 codec refuses encoded ones),
  so a body without ``\\u`` skips the per-string Unicode check;
* a sender (``Peer``, every message has one) whose exact JSON values, types included, were
  validated before is the same frozen object again: at most ``PEER_CACHE`` of them are kept,
  and the cache is emptied when full, so forged senders cannot grow it;
* each message class gets a validator and a dumper compiled for its fields (``_fast``): the
  common case (ASCII strings, 64-bit ints, finite floats, ``null`` state) is checked inline,
  and anything else, valid or not, goes through the generic per-field path, which gives the
  same value or the same error (an EXECUTE decoded in ~0.74x the time and encoded in ~0.63x,
  a RESULT ~0.65x and ~0.8x: medians of 5 interleaved runs against the generic path, load 6-7);
* a RESULT and a RESULT_ACK (one each per run another node reports) and an EXECUTE (one per
  dispatch) are written as text in one step (``_WRITERS``, :mod:`clerk._codecwrite`): the
  generic path's text character for character, the sender's text remembered, the scalars
  checked inline and the state checked and encoded alone; a field out of that common case
  sends the message through the generic path, which takes it or names it;
* a HEARTBEAT's table rows go after its body, unescaped, to a node that reads them there
  (``TableDelta.tail``, ``clerk._messages.RAW_ROWS_MARK``; :mod:`clerk._codectail`, "Rows
  after the body"): the only body followed by anything, and only by what its ``tail`` says.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from collections.abc import Callable, Sequence
from json.encoder import encode_basestring  # type: ignore[attr-defined]
from typing import Any

from clerk._codecdecode import decoders
from clerk._codectail import check_untailed, read_tail, tail_writer
from clerk._codecvalid import (
    _INT_LIMIT,
    MAX_ITEMS,
    MAX_JSON_DEPTH,
    MAX_STRING,
    DecodeError,
    Validator,
    _fail,
    _v_bool,
    _v_float,
    _v_int,
    _v_json,
    _v_json_plain,
    _v_str,
    _v_str_plain,
    json_depth,
)
from clerk._codecwrite import ENCODE as _ENCODE
from clerk._codecwrite import Writer, writers
from clerk._messages import MESSAGE_KINDS, Heartbeat, Json, Message, Peer

__all__ = [
    "DecodeError",
    "EncodeError",
    "MAGIC",
    "MAX_ITEMS",
    "MAX_JSON_DEPTH",
    "MAX_MESSAGE_BYTES",
    "MAX_STRING",
    "PROTOCOL_VERSION",
    "decode",
    "decode_body",
    "encode",
    "json_depth",
]

PROTOCOL_VERSION = 2
MAGIC = b"CLERK" + bytes([PROTOCOL_VERSION])
#: Largest accepted message (all frames together). Task state has its own, smaller limit.
MAX_MESSAGE_BYTES = 1 << 20
#: Validated senders kept by the decoder (see the module docstring): a cluster has a few
#: hundred members at most; a flood of forged ones only empties the cache now and then.
PEER_CACHE = 1024
#: Field paths kept per dataclass validator (one per enclosing path: a message kind, or an
#: item of a list of members).
PATHS_CACHE = 1024

#: A str as the message encoder quotes it (``ensure_ascii=False``; for ASCII text the same as
#: with it).
_quote: Callable[[str], str] = encode_basestring
_KIND_OF: dict[type, bytes] = {cls: kind.encode() for kind, cls in MESSAGE_KINDS.items()}


class EncodeError(ValueError):
    """A message that cannot be put on the wire (e.g. state JSON cannot carry)."""


def _compile(tp: Any, unicode: bool = True) -> Validator:
    """The validator of a field of type ``tp``; ``unicode=False``: for text without ``\\u``
    escapes (no per-string surrogate check, see the module docstring)."""
    if tp is Json or tp is Any:
        return _v_json if unicode else _v_json_plain
    if tp is int:
        return _v_int
    if tp is float:
        return _v_float
    if tp is str:
        return _v_str if unicode else _v_str_plain
    if tp is bool:
        return _v_bool
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {tp!r}")
        sub = _compile(inner[0], unicode)

        def v_optional(value: Any, path: str) -> Any:
            return None if value is None else sub(value, path)

        return v_optional
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported tuple {tp!r}")
        item = _compile(args[0], unicode)

        strs = item is _v_str or item is _v_str_plain

        def v_tuple(value: Any, path: str) -> tuple[Any, ...]:
            if type(value) is not list:
                _fail(path, "a list", value)
            if len(value) > MAX_ITEMS:
                _fail(path, f"a list of at most {MAX_ITEMS} items", "...")
            # Strings (a JOIN's 10,000 task entries: 3.7 ms item by item) checked at once;
            # anything else item by item, which names the item that fails.
            if strs and set(map(type, value)) <= _STR and max(map(len, value), default=0) \
                    <= MAX_STRING and (item is _v_str_plain or "".join(value).isascii()):
                return tuple(value)
            return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

        return v_tuple
    if dataclasses.is_dataclass(tp):
        return _compile_dataclass(tp, unicode)
    raise TypeError(f"unsupported field type {tp!r}")


_SCALARS = (str, int, float, bool)
_STR = {str}


def _compile_dataclass(cls: Any, unicode: bool = True) -> Validator:
    hints = typing.get_type_hints(cls, localns={"Json": Json})
    fields = [(f.name, _compile(hints[f.name], unicode), f) for f in dataclasses.fields(cls)]
    required = {
        name
        for name, _, f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    known = {name for name, _, _ in fields}

    # Each field's path ("execute.sender"), built once per enclosing path, not per message
    # (a path is only read in an error; the cache is bounded like the list of paths is).
    paths: dict[str, tuple[str, ...]] = {}

    def v_dataclass(value: Any, path: str) -> Any:
        if type(value) is not dict:
            _fail(path, "an object", value)
        keys = value.keys()
        if not (keys <= known and required <= keys):
            extra = keys - known
            if extra:
                _fail(path, f"only the fields {sorted(known)}", sorted(extra))
            missing = required - keys
            raise DecodeError("field", f"{path}: missing field(s) {sorted(missing)}")
        dotted = paths.get(path)
        if dotted is None:
            if len(paths) >= PATHS_CACHE:
                paths.clear()
            dotted = paths[path] = tuple(f"{path}.{name}" for name, _, _ in fields)
        kwargs = {
            name: validate(value[name], p)
            for (name, validate, _), p in zip(fields, dotted, strict=True)
            if name in value
        }
        return cls(**kwargs)

    if not cls.__dataclass_params__.frozen or not all(
            hints[f.name] in _SCALARS for f in dataclasses.fields(cls)):
        return v_dataclass
    # Frozen, scalar fields only (a Peer): the same JSON values, types included (``true`` is
    # not ``1``), validate to an equal object, so the one built before is handed out again.
    # Shared by both validator sets: a value with a lone surrogate never validates, so it is
    # never cached.
    cache = _SCALAR_CACHES.setdefault(cls, {})

    def v_cached(value: Any, path: str) -> Any:
        if type(value) is not dict:
            _fail(path, "an object", value)
        # The items, then their values' types in the same order (``true`` is not ``1``):
        # built in C, where a generator of triples took ~0.9 us of a message's decode.
        key = (*value.items(), *map(type, value.values()))
        try:
            hit = cache.get(key)
        except TypeError:  # an unhashable value (a list, an object): not valid anyway
            hit = None
        if hit is not None:
            return hit
        obj = v_dataclass(value, path)
        if len(cache) >= PEER_CACHE:
            cache.clear()
        cache[key] = obj
        return obj

    return v_cached


_SCALAR_CACHES: dict[type, dict[tuple[Any, ...], Any]] = {}


def _inline(tp: Any, x: str, unicode: bool) -> str | None:
    """A Python expression true when the field value ``x`` is certainly valid as it is (the
    generic validator would return it unchanged), or None if the field has no such check."""
    if tp is int:
        return f"(type({x}) is int and -_L <= {x} < _L)"
    if tp is float:
        return f"(type({x}) is float and _finite({x}))"
    if tp is bool:
        return f"(type({x}) is bool)"
    if tp is str:
        ascii_ok = f" and {x}.isascii()" if unicode else ""
        return f"(type({x}) is str and len({x}) <= _S{ascii_ok})"
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        sub = _inline(inner[0], x, unicode) if len(inner) == 1 else None
        return f"({x} is None or {sub})" if sub is not None else None
    return None


def _fast(cls: Any, generic: Validator, field_fn: Callable[[Any], Validator], *,
          decode: bool, unicode: bool = True) -> Validator:
    """``generic`` (a dataclass validator, or dumper: ``decode=False``) compiled for the fields
    of ``cls``: fields with an inline check (:func:`_inline`) are checked in place, the others
    go through their own validator (``field_fn(type)``) with their path, as in ``generic``.
    The first field that fails its inline check hands the whole value to ``generic``, which
    checks every field in the same order: the same result, or the same error, as ``generic``
    alone. Generated as source, like ``dataclasses`` does, so no call is made per scalar."""
    hints = typing.get_type_hints(cls, localns={"Json": Json})
    fields = dataclasses.fields(cls)
    ns: dict[str, Any] = {"_L": _INT_LIMIT, "_S": MAX_STRING, "_finite": math.isfinite,
                          "_slow": generic, "_cls": cls, "_MISSING": dataclasses.MISSING}
    lines: list[str] = []
    out: list[str] = []
    cached = not decode and all(hints[f.name] is not Json for f in fields)
    if decode:
        required = {f.name for f in fields if f.default is dataclasses.MISSING
                    and f.default_factory is dataclasses.MISSING}
        ns["_known"], ns["_required"] = {f.name for f in fields}, required
        lines.append("    if type(value) is not dict or not (value.keys() <= _known "
                     "and _required <= value.keys()):")
        lines.append("        return _slow(value, path)")
    else:
        if cached:  # the same frozen object (this node's Peer) is dumped once, as in generic
            ns["_last"] = [_NOTHING, None]
            lines.append("    if value is _last[0]:")
            lines.append("        return _last[1]")
        lines.append("    if type(value) is not _cls:")
        lines.append("        return _slow(value, path)")
    for i, f in enumerate(fields):
        x = f"x{i}"
        tp = hints[f.name]
        check = _inline(tp, x, unicode)
        if check is None:
            ns[f"_v{i}"] = field_fn(tp)
            value_of = f"_v{i}({x}, path + {'.' + f.name!r})"
        if decode and f.name not in required:
            if f.default_factory is not dataclasses.MISSING:  # (no message has one)
                raise TypeError(f"{cls.__name__}.{f.name}: default_factory is not supported")
            ns[f"_d{i}"] = f.default
            lines.append(f"    {x} = value.get({f.name!r}, _MISSING)")
            lines.append(f"    if {x} is _MISSING:")
            lines.append(f"        {x} = _d{i}")
            indent = "    elif "
        else:
            lines.append(f"    {x} = value[{f.name!r}]" if decode else f"    {x} = value.{f.name}")
            indent = "    if "
        if check is None and decode and tp is Json:
            # A JSON field's null (an EXECUTE's or a RESULT's usual state) is what its
            # validator returns for it: no call, no path built.
            lines.append(f"{indent}{x} is not None:")
            lines.append(f"        {x} = {value_of}")
        elif check is None:
            if indent.startswith("    elif"):
                lines.append("    else:")
                lines.append(f"        {x} = {value_of}")
            else:
                lines.append(f"    {x} = {value_of}")
        else:
            lines.append(f"{indent}not {check}:")
            lines.append("        return _slow(value, path)")
        out.append(x)
    if decode:
        lines.append(f"    return _cls({', '.join(out)})")
    else:
        pairs = ", ".join(f"{f.name!r}: {x}" for f, x in zip(fields, out, strict=True))
        lines.append(f"    out = {{{pairs}}}")
        for f, x in zip(fields, out, strict=True):
            if f.metadata.get("omit_none"):  # (OMIT_NONE: as in _dataclass_dumper)
                lines.append(f"    if {x} is None:")
                lines.append(f"        del out[{f.name!r}]")
        if cached:
            lines.append("    _last[0], _last[1] = value, out")
        lines.append("    return out")
    source = "def fast(value, path):\n" + "\n".join(lines) + "\n"
    exec(compile(source, f"<clerk._codec {cls.__name__}>", "exec"), ns)  # noqa: S102
    return ns["fast"]  # type: ignore[no-any-return]


#: The validator of a message class's bodies (clerk._codecdecode.decoders: the one-step
#: decoder of a body holding every field, any other through ``_fast``'s).
_decoder = decoders(_compile, _compile_dataclass, _fast, _inline, _SCALAR_CACHES)


_VALIDATORS: dict[bytes, Validator] = {
    kind.encode(): _decoder(cls, True) for kind, cls in MESSAGE_KINDS.items()}
#: The same, for bodies without a ``\\u`` escape (no lone surrogate can be in them).
_VALIDATORS_PLAIN: dict[bytes, Validator] = {
    kind.encode(): _decoder(cls, False) for kind, cls in MESSAGE_KINDS.items()}
#: Each kind's validators (with, without a ``\\u`` escape) and its name, the path of its fields.
_DECODERS: dict[bytes, tuple[Validator, Validator, str]] = {
    kind: (v, _VALIDATORS_PLAIN[kind], kind.decode()) for kind, v in _VALIDATORS.items()}


# --- encode / decode ---------------------------------------------------------------------------


def _dumper(tp: Any) -> Validator:
    """What ``encode`` does to a field of type ``tp``: the receiver's check of it fused with the
    conversion to JSON types, in one pass. Scalars and JSON values use the decoder's own
    validators (they return the value unchanged; the path is formatted only on failure)."""
    if tp is Json or tp is Any or tp in (int, float, str, bool):
        return _compile(tp)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        sub = _dumper(next(a for a in typing.get_args(tp) if a is not type(None)))
        return lambda value, path: None if value is None else sub(value, path)
    if origin is tuple:
        item = _dumper(typing.get_args(tp)[0])

        def d_tuple(value: Any, path: str) -> list[Any]:
            if type(value) is not tuple and type(value) is not list:
                _fail(path, "a list", value)
            if len(value) > MAX_ITEMS:
                _fail(path, f"a list of at most {MAX_ITEMS} items", "...")
            if item is _v_str and set(map(type, value)) <= _STR and max(  # (as v_tuple)
                    map(len, value), default=0) <= MAX_STRING and "".join(value).isascii():
                return list(value)
            return [item(v, path + "[]") for v in value]

        return d_tuple
    if dataclasses.is_dataclass(tp):
        return _dataclass_dumper(tp)
    raise TypeError(f"unsupported field type {tp!r}")


_NOTHING = object()  # no message dumped yet


def _dataclass_dumper(cls: Any) -> Validator:
    hints = typing.get_type_hints(cls, localns={"Json": Json})
    fields = [(f.name, "." + f.name, _dumper(hints[f.name])) for f in dataclasses.fields(cls)]
    # The same frozen object (this node's Peer in every message it sends) is dumped once: the
    # cache holds a reference to it, so identity cannot be confused with a recycled id. Only
    # for classes without a JSON field, whose contents could change under a frozen object.
    cached = all(hints[f.name] is not Json for f in dataclasses.fields(cls))
    last: list[Any] = [_NOTHING, None]  # (not None: a None in its place is an error)
    # Fields left out while None (``OMIT_NONE``): an older node refuses a field it lacks.
    omit = [f.name for f in dataclasses.fields(cls) if f.metadata.get("omit_none")]

    def d_dataclass(value: Any, path: str) -> dict[str, Any]:
        if cached and value is last[0]:
            return last[1]  # type: ignore[no-any-return]
        if type(value) is not cls:
            _fail(path, f"a {cls.__name__}", value)
        out = {name: dump(getattr(value, name), path + dot) for name, dot, dump in fields}
        for name in omit:
            if out[name] is None:
                del out[name]
        if cached:
            last[0], last[1] = value, out
        return out

    return d_dataclass


_DUMPERS: dict[type, Validator] = {
    cls: _fast(cls, _dataclass_dumper(cls), _dumper, decode=False)
    for cls in MESSAGE_KINDS.values()
}


#: Messages written in one step when their fields are the common case (clerk._codecwrite).
_WRITERS: dict[type, Writer] = writers(_dumper(Peer))
#: A HEARTBEAT whose delta's rows go after the body (clerk._codectail); any other, generic.
_WRITERS[Heartbeat] = tail_writer(_DUMPERS[Heartbeat], _ENCODE, EncodeError)


def encode(msg: Message, max_bytes: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """Frames for ``msg``. Raises :class:`EncodeError` if JSON cannot carry it or it is too big.

    The receiver's checks are applied here, in the same pass that turns the dataclass into JSON
    types (not by decoding the result again): what encodes must decode."""
    kind = _KIND_OF.get(type(msg))
    if kind is None:
        raise EncodeError(f"not a protocol message: {type(msg).__name__}")
    write = _WRITERS.get(type(msg))
    text = write(msg) if write is not None else None
    if text is not None:
        body = text.encode()
        if len(MAGIC) + len(kind) + len(body) > max_bytes:
            raise EncodeError(f"{kind.decode()} message is {len(MAGIC) + len(kind) + len(body)}"
                              f" bytes, over the {max_bytes} limit")
        return [MAGIC, kind, body]
    try:
        data = _DUMPERS[type(msg)](msg, kind.decode())
    except DecodeError as exc:
        raise EncodeError(f"{kind.decode()} message cannot be sent: {exc.detail}") from None
    try:
        body = _ENCODE(data).encode()
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(f"{kind.decode()} message cannot be encoded as JSON: {exc}") from None
    size = len(MAGIC) + len(kind) + len(body)
    if size > max_bytes:
        raise EncodeError(f"{kind.decode()} message is {size} bytes, over the {max_bytes} limit")
    return [MAGIC, kind, body]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf without calling parse_constant
        raise ValueError(f"{text[:40]} is out of range")
    return value


#: One decoder for every message: ``json.loads`` with hooks builds a decoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_parse_float)
#: Its scanner: (value, end) of the JSON value at an index; StopIteration if none starts there.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def _frame_size(frame: Any) -> int:
    if type(frame) is bytes or type(frame) is bytearray:
        return len(frame)
    if type(frame) is memoryview:
        return frame.nbytes
    raise DecodeError("frames", f"frames must be bytes, got {type(frame).__name__}")


def decode(frames: Sequence[bytes], max_bytes: int = MAX_MESSAGE_BYTES) -> Message:
    """The message in ``frames``; raises :class:`DecodeError` (only) for anything invalid."""
    if not isinstance(frames, list | tuple):
        raise DecodeError("frames", f"expected a list of 3 frames, got {type(frames).__name__}")
    if len(frames) != 3:
        raise DecodeError("frames", f"expected 3 frames, got {len(frames)}")
    head, kind, body = frames
    if type(head) is bytes and type(kind) is bytes and type(body) is bytes:
        size = len(head) + len(kind) + len(body)  # what the loop receives: no copies
    else:
        size = _frame_size(head) + _frame_size(kind) + _frame_size(body)
        head, kind, body = bytes(head), bytes(kind), bytes(body)
    if size > max_bytes:
        raise DecodeError("size", f"message of {size} bytes is over the {max_bytes} limit")
    if head[:5] != MAGIC[:5]:
        raise DecodeError("magic", "not a clerk frame")
    if head != MAGIC:
        raise DecodeError("version", f"unsupported protocol header {head!r}")
    return decode_body(kind, body)


def decode_body(kind: bytes, body: bytes) -> Message:
    """The message of kind ``kind`` in ``body``, frame 2 of a message whose header and size
    were checked (:func:`decode`, or a batch's: clerk._batch); raises :class:`DecodeError`."""
    decoders = _DECODERS.get(kind)
    if decoders is None:
        raise DecodeError("kind", f"unknown message kind {kind[:40]!r}")
    validate, plain, name = decoders
    if b"\\u" not in body:
        validate = plain
    try:
        text = body.decode("utf-8")
        # The scanner straight away: ``JSONDecoder.decode`` adds two regex matches for the
        # whitespace around the value (~1/4 of its time on a no-op EXECUTE). Not JSON at
        # its start: the usual way, which accepts or refuses it as before.
        data, end = _SCAN(text, 0)
    except StopIteration:
        data, end = _decode_text(kind, text), len(text)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError("json", f"{kind.decode()} body is not valid JSON: {exc}") from None
    if end != len(text):
        # Rows after a HEARTBEAT's body (clerk._codectail); else text that is not one value
        # from end to end (whitespace around it, extra data) goes the usual way, which
        # accepts or refuses it as before.
        tailed = read_tail(kind, text, end, data, validate, name)
        if tailed is not None:
            return tailed
        data = _decode_text(kind, text)
    msg = validate(data, name)
    if type(msg) is Heartbeat:
        return check_untailed(msg)
    return msg


def _decode_text(kind: bytes, text: str) -> Any:
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise DecodeError("json", f"{kind.decode()} body is not valid JSON: {exc}") from None
