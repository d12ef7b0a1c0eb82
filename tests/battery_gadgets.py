"""Execution gadgets: globals outside the usual blocklists that still run a command or Python
source. Each file really runs its payload; the name returned is the gadget a scanner must call
dangerous. An allowlist (torch's weights-only list) rejects them all; a blocklist of modules
misses most.

Sources: picklescan's 2025 advisories and JFrog's picklescan zero-days (dotted names after a
harmless module, ``pkgutil.resolve_name``, ``_operator`` chains, ``timeit``, ``cProfile``,
``pydoc.pipepager``, ``bdb``/``pdb``/``trace``), fickling's unsafe-imports list (issue #190:
"Integrate recent PickleScan bypasses"), arXiv 2508.19774 (gadgets found in the standard
library and in torch: ``torch.fx.graph_module.reduce_graph_module``,
``torch.jit.unsupported_tensor_ops.execWrapper``, ``torch.utils.collect_env.run``).
"""

from __future__ import annotations

from pathlib import Path

from tests.crafting import BUILD, EMPTY_DICT, STOP, Registry, call, glob, proto4, s, touch, write_canary

REGISTRY = Registry()


def _write(path: Path, body: bytes) -> None:
    path.write_bytes(proto4(body + STOP))


@REGISTRY.add("pickle")
def gadget_posixpath_dotted_os_system(path: Path, canary: Path) -> str:
    """``find_class('posixpath', 'os.system')``: protocol 4 resolves dotted names attribute by
    attribute, so any module that imported ``os`` hands it out. A scanner that checks the
    module alone (``posixpath`` looks harmless) misses it."""
    _write(path, call(glob("posixpath", "os.system"), s(touch(canary))))
    return "posixpath.os.system"


@REGISTRY.add("pickle")
def gadget_torch_serialization_dotted_os_system(path: Path, canary: Path) -> str:
    """``torch.serialization`` + ``os.system`` through the GLOBAL opcode in a protocol 4
    pickle (the dots are resolved for GLOBAL too once PROTO says 4): the module is torch's own."""
    _write(path, b"ctorch.serialization\nos.system\n" + b"(" + s(touch(canary)) + b"tR")
    return "torch.serialization.os.system"


@REGISTRY.add("pickle")
def gadget_pkgutil_resolve_name(path: Path, canary: Path) -> str:
    """``pkgutil.resolve_name('os:system')`` returns ``os.system``, which REDUCE then calls: the
    dangerous name is a string argument, never a global."""
    _write(path, call(call(glob("pkgutil", "resolve_name"), s("os:system")), s(touch(canary))))
    return "pkgutil.resolve_name"


@REGISTRY.add("pickle")
def gadget_fx_reduce_graph_module(path: Path, canary: Path) -> str:
    """``torch.fx.graph_module.reduce_graph_module(body, import_block)`` execs
    ``import_block + body['_code']`` to rebuild ``forward``: the import block is the payload."""
    body = EMPTY_DICT + s("_code") + s("\ndef forward(self):\n    return None\n") + b"s"  # SETITEM
    _write(path, call(glob("torch.fx.graph_module", "reduce_graph_module"), body, s(write_canary(canary) + "\n")))
    return "torch.fx.graph_module.reduce_graph_module"


@REGISTRY.add("pickle")
def gadget_operator_methodcaller(path: Path, canary: Path) -> str:
    """``_operator.methodcaller('system', cmd)(torch.serialization.os)``: the C module
    ``_operator`` (not ``operator``), applied to the ``os`` module fetched as an attribute of
    a torch module."""
    caller = call(glob("_operator", "methodcaller"), s("system"), s(touch(canary)))
    _write(path, call(caller, glob("torch.serialization", "os")))
    return "_operator.methodcaller"


@REGISTRY.add("pickle")
def gadget_operator_attrgetter(path: Path, canary: Path) -> str:
    """``_operator.attrgetter('os.system')(torch.serialization)(cmd)``: attrgetter walks a
    dotted path from any module to ``os.system``."""
    getter = call(glob("_operator", "attrgetter"), s("os.system"))
    _write(path, call(call(getter, glob("torch", "serialization")), s(touch(canary))))
    return "_operator.attrgetter"


@REGISTRY.add("pickle")
def gadget_builtins_getattr_chain(path: Path, canary: Path) -> str:
    """``getattr(getattr(torch.serialization, 'os'), 'system')(cmd)``: two getattr calls from a
    torch module to ``os.system``; no ``os`` global anywhere."""
    getattr_ = glob("builtins", "getattr")
    os_module = call(getattr_, glob("torch", "serialization"), s("os"))
    _write(path, call(call(getattr_, os_module, s("system")), s(touch(canary))))
    return "builtins.getattr"


@REGISTRY.add("pickle")
def gadget_builtins_dict_get(path: Path, canary: Path) -> str:
    """``dict.get(builtins.__dict__, 'exec')(source)``: the method descriptor
    ``builtins.dict.get`` (the name starts with the allowlisted ``builtins.dict``) pulls
    ``exec`` out of the builtins namespace."""
    get = call(glob("builtins", "dict.get"), glob("builtins", "__dict__"), s("exec"))
    _write(path, call(get, s(write_canary(canary))))
    return "builtins.dict.get"


@REGISTRY.add("pickle")
def gadget_timeit(path: Path, canary: Path) -> str:
    """``timeit.timeit('pass', setup)``: timeit compiles and runs its ``setup`` string once
    (then ``pass`` a million times, a few milliseconds)."""
    _write(path, call(glob("timeit", "timeit"), s("pass"), s(write_canary(canary))))
    return "timeit.timeit"


@REGISTRY.add("pickle")
def gadget_cprofile_run(path: Path, canary: Path) -> str:
    """``cProfile.run(source)`` execs ``source`` in ``__main__`` under the profiler (and prints
    the profile)."""
    _write(path, call(glob("cProfile", "run"), s(write_canary(canary))))
    return "cProfile.run"


@REGISTRY.add("pickle")
def gadget_profile_run(path: Path, canary: Path) -> str:
    """``profile.run(source)``: the pure-Python profiler execs ``source`` in ``__main__`` too,
    and ``profile`` is in no module blocklist we know of."""
    _write(path, call(glob("profile", "run"), s(write_canary(canary))))
    return "profile.run"


@REGISTRY.add("pickle")
def gadget_pydoc_pipepager(path: Path, canary: Path) -> str:
    """``pydoc.pipepager(text, cmd)`` pipes ``text`` into ``subprocess.Popen(cmd, shell=True)``:
    the help system's pager runs any shell command."""
    _write(path, call(glob("pydoc", "pipepager"), s(""), s(touch(canary))))
    return "pydoc.pipepager"


@REGISTRY.add("pickle")
def gadget_collect_env_run(path: Path, canary: Path) -> str:
    """``torch.utils.collect_env.run(cmd)``: torch's environment reporter runs a shell command
    (``subprocess.Popen(..., shell=True)`` for a string)."""
    _write(path, call(glob("torch.utils.collect_env", "run"), s(touch(canary))))
    return "torch.utils.collect_env.run"


@REGISTRY.add("pickle")
def gadget_bdb_run(path: Path, canary: Path) -> str:
    """``bdb.Bdb.run(bdb.Bdb(), source)``: the debugger base class execs ``source`` (with a
    trace function that stops nowhere)."""
    _write(path, call(glob("bdb", "Bdb.run"), call(glob("bdb", "Bdb")), s(write_canary(canary))))
    return "bdb.Bdb.run"


@REGISTRY.add("pickle")
def gadget_trace_run(path: Path, canary: Path) -> str:
    """``trace.Trace.run(trace.Trace(0, 0), source)``: a tracer that counts and traces
    nothing execs ``source`` in ``__main__``."""
    tracer = call(glob("trace", "Trace"), b"K\x00", b"K\x00")  # count=0, trace=0
    _write(path, call(glob("trace", "Trace.run"), tracer, s(write_canary(canary))))
    return "trace.Trace.run"


@REGISTRY.add("pickle")
def gadget_pdb_run(path: Path, canary: Path) -> str:
    """``pdb.Pdb.run(pdb, source)`` on a ``pdb.Pdb()`` whose command queue (set by BUILD) holds
    ``c``: the debugger stops at the first line, reads ``continue`` from its queue, not from
    stdin, and the source runs."""
    debugger = call(glob("pdb", "Pdb")) + EMPTY_DICT + s("cmdqueue") + b"](" + s("c") + b"es" + BUILD
    _write(path, call(glob("pdb", "Pdb.run"), debugger, s(write_canary(canary))))
    return "pdb.Pdb.run"


@REGISTRY.add("pickle")
def gadget_jit_exec_wrapper(path: Path, canary: Path) -> str:
    """``torch.jit.unsupported_tensor_ops.execWrapper(code, glob, loc)`` is ``exec`` under a
    torch name: a scanner that trusts ``torch.*`` runs it."""
    _write(path, call(glob("torch.jit.unsupported_tensor_ops", "execWrapper"), s(write_canary(canary)), EMPTY_DICT,
                      EMPTY_DICT))
    return "torch.jit.unsupported_tensor_ops.execWrapper"


@REGISTRY.add("pickle")
def gadget_numpy_runstring(path: Path, canary: Path) -> str:
    """``numpy.testing._private.utils.runstring(source, namespace)`` is ``exec`` (numpy ships
    with torch installs)."""
    _write(path, call(glob("numpy.testing._private.utils", "runstring"), s(write_canary(canary)), EMPTY_DICT))
    return "numpy.testing._private.utils.runstring"
