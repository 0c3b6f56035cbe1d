"""The codec's decoder for a message body as the node sends it (:mod:`clerk._codec`).

Split out of :mod:`clerk._codec` (near its size bound). A body that a node of this build
writes holds every field of its message (only ``OMIT_NONE`` fields while None are left out),
so the validator compiled here (:func:`full_decoder`, built by :func:`decoders`) takes that
case in one step:

* the fields are read by name in one ``try`` (a missing one: the whole value goes to the
  generic validator), the ``OMIT_NONE`` ones with ``get``, and a count of the fields present
  rules out an extra one, where the general case compares key sets (two set operations);
* a nested part (a HEARTBEAT's member rows and table delta, a claim) is decoded the same way,
  its path built only for the call (the generic path builds its fields' paths too);
* a sender (a frozen dataclass of scalars, ``_codec``'s ``PEER_CACHE``) seen before, with the
  same JSON values and types, is looked up in place, without a call or a path string: a miss,
  or a value that is not an object of hashable values, goes to the field's own validator,
  which validates it and fills the cache as before;
* the scalar checks are ``_codec._inline``'s; a JSON field's null is taken as it is;
* the message is built as its frozen dataclass's __init__ builds it (``object.__setattr__``
  per field) without the call to __init__ (:func:`_plain_init`).

Any other count of fields, and any field that fails its inline check, hands the whole value
to the validator ``_codec._fast`` compiled for the general case, or to the generic one: the
same message, or the same :class:`DecodeError` with the same field path and message, as the
generic validator alone (``tests/unit/test_codecdecode.py``).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Callable
from typing import Any

from clerk._codecvalid import _INT_LIMIT, MAX_ITEMS, MAX_STRING, Validator, _fail
from clerk._messages import Json

__all__ = ["decoders", "full_decoder"]

_MISSING = object()  # (an OMIT_NONE field left out of the body)


def full_decoder(cls: Any, general: Validator, generic: Validator,
                 field_fn: Callable[[Any], Validator],
                 inline: Callable[[Any, str, bool], str | None],
                 caches: dict[type, dict[tuple[Any, ...], Any]], *,
                 unicode: bool) -> Validator:
    """A validator of ``cls`` bodies that holds all its fields (see the module docstring):
    ``general`` for any other count of fields, ``generic`` (checking every field in order)
    when a field is missing or fails its inline check; ``field_fn(type)`` the validator of a
    field without an inline check (``inline(type, name, unicode)``, :func:`clerk._codec._inline`)
    and ``caches`` the senders' caches by class (filled by their validator)."""
    hints = typing.get_type_hints(cls, localns={"Json": Json})
    fields = dataclasses.fields(cls)
    ns: dict[str, Any] = {"_L": _INT_LIMIT, "_S": MAX_STRING, "_finite": math.isfinite,
                          "_general": general, "_slow": generic, "_cls": cls,
                          "_map": map, "_type": type}
    # Fields left out of the body while None (OMIT_NONE) may be absent; the others are read
    # in one try (a missing one: the whole value goes to the generic validator).
    omit = [i for i, f in enumerate(fields) if f.metadata.get("omit_none")
            and f.default is None]
    least = len(fields) - len(omit)
    counts = f"len(value) != {least}" if not omit else f"not {least} <= len(value) <= {len(fields)}"
    lines = [f"    if type(value) is not dict or {counts}:",
             "        return _general(value, path)",
             "    try:"]
    lines += [f"        x{i} = value[{f.name!r}]" for i, f in enumerate(fields) if i not in omit]
    lines += ["    except KeyError:",  # (a field missing, so another one is there instead)
              "        return _slow(value, path)"]
    if omit:
        ns["_MISSING"] = _MISSING
        lines += [f"    x{i} = value.get({fields[i].name!r}, _MISSING)" for i in omit]
        present = " + ".join(f"(x{i} is not _MISSING)" for i in omit)
        lines += [f"    if len(value) != {least} + {present}:",  # (an extra field)
                  "        return _slow(value, path)"]
        for i in omit:
            lines += [f"    if x{i} is _MISSING:", f"        x{i} = None"]
    for i, f in enumerate(fields):
        x, tp = f"x{i}", hints[f.name]
        check = inline(tp, x, unicode)
        if check is not None:
            lines.append(f"    if not {check}:")
            lines.append("        return _slow(value, path)")
            continue
        ns[f"_v{i}"] = field_fn(tp)
        call = f"_v{i}({x}, path + {'.' + f.name!r})"
        if tp is Json:
            lines.append(f"    if {x} is not None:")
            lines.append(f"        {x} = {call}")
        elif tp in caches:  # a sender: the same values and types, the same object as before
            ns[f"_c{i}"] = caches[tp]
            lines.append("    try:")
            lines.append(f"        {x} = _c{i}[(*{x}.items(), *_map(_type, {x}.values()))]")
            lines.append("    except (KeyError, TypeError, AttributeError):")
            lines.append(f"        {x} = {call}")
        else:
            lines.append(f"    {x} = {call}")
    if _plain_init(cls):
        # The fields set on a new object as the frozen dataclass's own __init__ sets them
        # (object.__setattr__), without the call to it: ~0.75x the construction of an EXECUTE.
        ns["_new"], ns["_set"] = object.__new__, object.__setattr__
        lines.append("    o = _new(_cls)")
        lines += [f"    _set(o, {f.name!r}, x{i})" for i, f in enumerate(fields)]
        lines.append("    return o")
    else:
        lines.append(f"    return _cls({', '.join(f'x{i}' for i in range(len(fields)))})")
    source = "def full(value, path):\n" + "\n".join(lines) + "\n"
    exec(compile(source, f"<clerk._codecdecode {cls.__name__}>", "exec"), ns)  # noqa: S102
    return ns["full"]  # type: ignore[no-any-return]


def _plain_init(cls: Any) -> bool:
    """Whether ``cls``'s __init__ only sets its fields: a frozen dataclass with slots, its
    generated __init__, no ``__post_init__``, no field outside __init__ (``init=False``)."""
    params = cls.__dataclass_params__
    return bool(params.frozen and params.init and "__slots__" in cls.__dict__
                and not hasattr(cls, "__post_init__") and cls.__new__ is object.__new__
                and all(f.init for f in dataclasses.fields(cls))
                and cls.__init__.__code__.co_filename == "<string>")  # (dataclasses' own)


def decoders(compile_field: Callable[[Any, bool], Validator],
             compile_dataclass: Callable[[Any, bool], Validator],
             fast: Callable[..., Validator],
             inline: Callable[[Any, str, bool], str | None],
             caches: dict[type, dict[tuple[Any, ...], Any]]) -> Callable[[Any, bool], Validator]:
    """``decoder(cls, unicode)``: the validator of ``cls`` bodies, :func:`full_decoder` over
    ``fast``'s (``clerk._codec._fast``) over the generic one (``compile_dataclass``). A nested
    part (a member row, a table delta, and lists or optional ones of them) gets a decoder of
    its own; any other field, and a sender-like part (cached by value in ``caches``), its
    validator from ``compile_field`` (``clerk._codec._compile``)."""

    def decoder(cls: Any, unicode: bool) -> Validator:
        def field_fn(tp: Any) -> Validator:
            return decode_field(tp, unicode)

        generic = compile_dataclass(cls, unicode)
        general = fast(cls, generic, field_fn, decode=True, unicode=unicode)
        return full_decoder(cls, general, generic, field_fn, inline, caches, unicode=unicode)

    def decode_field(tp: Any, unicode: bool) -> Validator:
        if dataclasses.is_dataclass(tp):
            generic = compile_field(tp, unicode)
            return generic if tp in caches else decoder(tp, unicode)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
                sub = decode_field(inner[0], unicode)

                def d_optional(value: Any, path: str) -> Any:
                    return None if value is None else sub(value, path)

                return d_optional
        if origin is tuple and len(args) == 2 and dataclasses.is_dataclass(args[0]):
            item = decode_field(args[0], unicode)

            def d_tuple(value: Any, path: str) -> tuple[Any, ...]:  # (as _compile's v_tuple)
                if type(value) is not list:
                    _fail(path, "a list", value)
                if len(value) > MAX_ITEMS:
                    _fail(path, f"a list of at most {MAX_ITEMS} items", "...")
                return tuple(item(v, f"{path}[{i}]") for i, v in enumerate(value))

            return d_tuple
        return compile_field(tp, unicode)

    return decoder
