"""Bounds on the work of reading a downloaded pickle: about the file's own size, never more.

A pickle can refer back to any object it has built (its memo: BINGET, LONG_BINGET, GET), so a
few hundred bytes can describe a list of ten references to a list of ten references to ...,
which expands into 10**12 elements when turned into a tree. ``prebuilt.authors_pickle`` refuses
lists, dicts, tuples and arrays met twice (the authors' files never share one: what they share
through the memo, measured on all six reference files, is only the globals, the dtypes and a
few short strings), and charges everything it materialises to a ``Budget`` sized by the file:
without sharing, every element costs at least one byte of pickle and every byte of array data
one byte. Before the unpickler runs, ``check_opcodes`` refuses memo slots far beyond the
objects built so far: CPython's unpickler sizes its memo table for the largest slot it is
told, so ``LONG_BINPUT 2**31`` alone would ask for 32 GiB.
"""

from __future__ import annotations

import pickle
import pickletools

MAX_RESULTS_BYTES = 64 << 20  # the authors' results.npy hold 3.5-4 MB (a 60,000-sample stream)
_SLACK = 64 << 10  # small files: headers and the dict itself


class Refused(pickle.UnpicklingError):
    """The pickle asks for something no authors' file holds; the text says what."""


class Budget:
    """Elements and bytes that reading a pickle of ``size`` bytes may materialise.

    Elements: one per value turned into a Python or numpy object; at most one per byte of
    pickle. Bytes: array and scalar data copied, and bytes that ``_codecs.encode`` makes from
    text (protocol 2); twice the file, as data can be both encoded and then copied.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.max_elements = size + _SLACK
        self.max_bytes = 2 * size + _SLACK
        self.elements = 0
        self.nbytes = 0

    def charge(self, elements: int = 0, nbytes: int = 0) -> None:
        self.elements += elements
        self.nbytes += nbytes
        if self.elements > self.max_elements:
            raise Refused(f"more than {self.max_elements} values from a file of {self.size} bytes "
                          "(references to the same objects, expanded)")
        if self.nbytes > self.max_bytes:
            raise Refused(f"more than {self.max_bytes} bytes of data from a file of {self.size} bytes "
                          "(references to the same data, copied)")


_PUTS = ("PUT", "BINPUT", "LONG_BINPUT")


def check_opcodes(payload: bytes) -> int:
    """Walk the opcodes once (no objects built); refuse memo slots that skip ahead.

    A pickler numbers its memo 0, 1, 2, ...; a slot above the number of objects stored so far
    would only make the unpickler allocate. Returns the number of opcodes.
    """
    stored = count = 0
    for count, (op, arg, _pos) in enumerate(pickletools.genops(payload), 1):
        if op.name == "MEMOIZE":
            stored += 1
        elif op.name in _PUTS:
            if not isinstance(arg, int) or arg > stored:
                raise Refused(f"memo slot {arg} when only {stored} objects were stored")
            stored += arg == stored
    return count
