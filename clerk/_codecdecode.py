"""The codec's decoder for a message body as the node sends it (:mod:`clerk._codec`).

Split out of :mod:`clerk._codec` (near its size bound). A body that a node of this build
writes holds every field of its message (only ``OMIT_NONE`` fields while None are left out),
so the validator compiled here (:func:`full_decoder`) takes that case in one step:

* the fields are read by name in one ``try`` (a missing one: the whole value goes to the
  generic validator), and a count equal to the number of fields rules out an extra one, where
  the general case compares key sets (two set operations);
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
import typing
from collections.abc import Callable
from typing import Any

from clerk._codecvalid import _INT_LIMIT, MAX_STRING, Validator
from clerk._messages import Json

__all__ = ["full_decoder"]


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
    lines = [f"    if type(value) is not dict or len(value) != {len(fields)}:",
             "        return _general(value, path)",
             "    try:"]
    lines += [f"        x{i} = value[{f.name!r}]" for i, f in enumerate(fields)]
    lines += ["    except KeyError:",  # (a field missing, so another one is there instead)
              "        return _slow(value, path)"]
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
