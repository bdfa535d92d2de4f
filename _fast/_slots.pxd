# cython: language_level=3
"""Where a slotted class keeps a field: the byte offset of its object slot in an instance.

ikemsg.pyx and record.pyx build instances of frozen slotted dataclasses without running
``__init__`` (allocating them and storing each field in its slot, as ``object.__setattr__``
does through the slot's member descriptor) and read the slots back; both find the slots here.
"""

cdef extern from "structmember.h":
    ctypedef struct PyMemberDef:
        int type
        Py_ssize_t offset
    int T_OBJECT_EX


cdef extern from "Python.h":
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member


cdef inline Py_ssize_t object_slot_offset(type cls, str field) except -1:
    """The offset of ``cls.field``'s slot; TypeError unless it is an object slot (T_OBJECT_EX,
    what ``__slots__`` and ``@dataclass(slots=True)`` make)."""
    descriptor = getattr(cls, field, None)
    if type(descriptor).__name__ != "member_descriptor" or (
        (<PyMemberDescrObject *>descriptor).d_member.type != T_OBJECT_EX
    ):
        raise TypeError(
            f"{cls.__name__}.{field} is not an object slot (use @dataclass(slots=True))"
        )
    return (<PyMemberDescrObject *>descriptor).d_member.offset
