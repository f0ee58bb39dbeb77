"""Architectures given as code rather than as a registered name.

``--arch`` accepts, besides the registered names:

- ``path/to/file.py:Factory`` — a class or function in a Python file (the file's sha256 is stored in
  every model wmtool writes, so a later change or move of the file is reported);
- ``package.module:Factory`` — the same, from an importable module;
- ``timm:NAME`` and ``transformers:CLASS`` — a model of those libraries, built without weights (what
  a ``config.json`` beside a safetensors file names; see :func:`spec_from_config`).

The factory is called with the ``--arch-args`` JSON object as keyword arguments and must return a
``torch.nn.Module`` that maps a batch of preprocessed images to logits. **Loading such an architecture
runs its code**, with your permissions, exactly as importing it in Python would: only name files you
trust. wmtool itself never unpickles; the weights still come from safetensors.

**Code is run only when the user names it.** A model file, folder or key is untrusted input, and its
card may name code too; :func:`build_from_code` imports a ``file.py`` or ``module`` spec only when this
run allowed it (:func:`allow_code`: the user's ``--arch``, ``--student``, ``--reference-arch`` or a sweep
spec's field, or ``--trust-code`` for every spec the models name). Library specs (``timm:``,
``transformers:``) build only models registered in those libraries and need no permission.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from wmtool.errors import UserError

LIBRARIES = {"timm": "timm", "transformers": "transformers"}


@dataclass(frozen=True)
class CodeTrust:
    """The code this run may import: specs the user named (canonical form), or everything (--trust-code)."""

    named: frozenset[str] = frozenset()
    everything: bool = False

    def permits(self, spec: str) -> bool:
        """Whether the canonical ``spec`` may be imported."""
        return self.everything or spec in self.named


_TRUST: ContextVar[CodeTrust] = ContextVar("wmtool_code_trust", default=CodeTrust())


def allow_code(spec: str | None = None, *, everything: bool = False) -> None:
    """Record that the user named ``spec`` on this run (it may then be imported, from a model's card too), or
    with ``everything`` that they trust whatever code the models of this run name (``--trust-code``)."""
    trust = _TRUST.get()
    named = trust.named | {canonical(spec)} if spec and is_code_spec(spec) else trust.named
    _TRUST.set(CodeTrust(named, trust.everything or everything))


@contextmanager
def code_scope(*, fresh: bool) -> Iterator[None]:
    """The extent of one run's permissions: ``--trust-code`` ends with the scope; with ``fresh`` (one
    command) so does the code named in it, else (a Python session) named code stays allowed afterwards."""
    before = _TRUST.get()
    token = _TRUST.set(CodeTrust() if fresh else before)
    try:
        yield
    finally:
        named = _TRUST.get().named
        _TRUST.reset(token)
        if not fresh:
            _TRUST.set(CodeTrust(before.named | named, before.everything))


class UntrustedCode(UserError):
    """A model's card names code the user did not allow on this run."""


def _check_allowed(spec: str) -> None:
    """Refuse to import code the user did not name on this run, in one line that says how to accept it."""
    if not _TRUST.get().permits(spec):
        raise UntrustedCode(f"the model names architecture code {spec}, which wmtool runs only when you name it (a "
                            f"model is untrusted input): pass --arch {spec} if you trust that code, or --trust-code "
                            "to run the code that the models of this command name")


def is_code_spec(arch: str) -> bool:
    """Whether ``arch`` names code (``module:Factory``, ``file.py:Factory``, ``timm:…``) rather than a plugin."""
    return ":" in arch


def canonical(spec: str) -> str:
    """The spec with a file path made absolute, so it still resolves from another working directory."""
    where, _, name = spec.rpartition(":")
    if where.endswith(".py"):
        return f"{Path(where).expanduser().resolve()}:{name}"
    return spec


def file_digest(path: Path) -> str:
    """The sha256 hex digest of a source file."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _from_file(path: Path, expected_sha256: str | None) -> tuple[Any, str]:
    if not path.is_file():
        raise UserError(f"architecture file {path} not found (moved or deleted?); pass --arch path/to/file.py:Name")
    digest = file_digest(path)
    if expected_sha256 and digest != expected_sha256:
        raise UserError(f"architecture file {path} changed since the model was saved (sha256 {expected_sha256[:12]}…, "
                        f"now {digest[:12]}…); pass --arch {path}:Name to use it as it is now")
    module_name = f"wmtool_user_arch_{digest[:16]}"
    if module_name not in sys.modules:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise UserError(f"architecture file {path} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # the user's code: any failure is theirs to see, in one line
            del sys.modules[module_name]
            raise UserError(f"architecture file {path} failed to import: {type(exc).__name__}: {exc}") from None
    return sys.modules[module_name], digest


def _from_module(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise UserError(f"architecture module {name!r} cannot be imported ({exc})") from None


def _library(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise UserError(f"this model needs the {name} library: pip install {name} "
                        f"(or: pip install 'wmtool[{name}]')") from None


def _library_factory(library: str, name: str) -> Callable[..., Any]:
    """A factory building ``name`` of timm or transformers with random weights."""
    module = _library(library)
    if library == "timm":
        if not module.is_model(name):  # a registered name only: no hf-hub: or local-dir: source
            raise UserError(f"timm has no architecture {name!r}")
        return lambda **kwargs: module.create_model(name, pretrained=False, **kwargs)

    def build(config: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        settings = dict(config or {})
        model_type = settings.pop("model_type", None)
        if model_type is None:
            raise UserError("a transformers architecture needs its config.json's model_type")
        cls = getattr(module, name, None)
        if not (isinstance(cls, type) and issubclass(cls, module.PreTrainedModel)):
            raise UserError(f"transformers has no model class {name!r}")
        return logits_class(cls)(module.AutoConfig.for_model(model_type, **settings, **kwargs))

    return build


def logits_class(cls: type) -> type:
    """A subclass of a transformers model class whose call returns the logits tensor (same tensor names)."""
    return type(f"{cls.__name__}Logits", (cls,), {"forward": lambda self, x: cls.forward(self, x).logits})


def build_from_code(spec: str, arguments: dict[str, Any], expected_sha256: str | None = None) -> tuple[Any, str, str | None]:
    """Build the module ``spec`` names with ``arguments``; returns (module, canonical spec, file sha256 or None)."""
    from torch import nn

    spec = canonical(spec)
    where, _, name = spec.rpartition(":")
    if not where or not name:
        raise UserError(f"--arch {spec!r}: write module:Factory, path/to/file.py:Factory, timm:NAME or "
                        "transformers:CLASS")
    digest = None
    if where in LIBRARIES:
        factory = _library_factory(where, name)
    else:
        _check_allowed(spec)
        if where.endswith(".py"):
            module, digest = _from_file(Path(where), expected_sha256)
        else:
            module = _from_module(where)
        factory = getattr(module, name, None)
        if not callable(factory):
            raise UserError(f"--arch {spec}: {where} has no class or function {name!r}")
    try:
        net = factory(**arguments)
    except UserError:
        raise
    except Exception as exc:  # the user's factory: report its failure in one line
        raise UserError(f"--arch {spec}: building the model failed: {type(exc).__name__}: {exc}") from None
    if not isinstance(net, nn.Module):
        raise UserError(f"--arch {spec}: the factory returned {type(net).__name__}, not a torch.nn.Module")
    return net, spec, digest


def spec_from_config(weights: Path) -> tuple[str, dict[str, Any]] | None:
    """The architecture a ``config.json`` beside ``weights`` names (timm's ``architecture`` or transformers'
    ``architectures``) with its arguments, or None when there is no such file."""
    from wmtool.folders import inside, read_config

    config_path = weights.with_name("config.json")
    if not config_path.is_file():
        return None
    config = read_config(inside(config_path.parent, config_path.name, str(config_path), root=config_path.parent),
                         str(config_path))
    if isinstance(config.get("architecture"), str):
        arguments = {k: config[k] for k in ("num_classes", "in_chans") if k in config}
        return f"timm:{config['architecture']}", arguments
    names = config.get("architectures")
    if isinstance(names, list) and names and isinstance(names[0], str):
        return f"transformers:{names[0]}", {"config": {k: v for k, v in config.items() if k != "architectures"}}
    return None
