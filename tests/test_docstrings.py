"""Every public name (in a module's ``__all__``) of both packages has a docstring."""

import importlib
import inspect
import pkgutil

import bayesnn
import samplers


def _modules():
    for pkg in (bayesnn, samplers):
        yield pkg
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            yield importlib.import_module(info.name)


def test_public_names_have_docstrings():
    missing = []
    for module in _modules():
        if not (module.__doc__ or "").strip():
            missing.append(module.__name__)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.ismodule(obj) or not (callable(obj) or inspect.isclass(obj)):
                continue
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module.__name__}.{name}")
    assert not missing, f"public names without docstrings: {sorted(set(missing))}"
