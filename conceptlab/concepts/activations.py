"""Capture hidden-layer activations of any torch model by dotted module name."""

from __future__ import annotations

import difflib
import hashlib
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from ..cache import load_cached, store_cached
from ..runtime import evaluating

Reduce = Literal["flatten", "mean"]


def resolve_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule at dotted path ``name``; an unknown name lists the closest existing ones.

    Args:
        model: Any torch model.
        name: A dotted module path (``layer3.1.conv2``).

    Returns:
        The submodule.

    Raises:
        ValueError: No submodule at ``name``.

    Examples:
        >>> from conceptlab.concepts import resolve_layer
        >>> resolve_layer(torch.nn.Sequential(torch.nn.Linear(2, 2)), "0")
        Linear(in_features=2, out_features=2, bias=True)
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise ValueError("a TorchScript module cannot show its hidden layers (TorchScript runs no Python hooks, which "
                         "reading a layer needs): export the model with torch.export.save(torch.export.export(model, "
                         "(example,)), 'model.pt2') and pass the .pt2 file, or save a conceptlab model file")
    modules = dict(model.named_modules())
    if name not in modules or not name:
        close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; layers include {', '.join(list(modules)[1:6])}"
        raise ValueError(f"model {type(model).__name__} has no layer {name!r}{hint}")
    return modules[name]


def reduce_activations(activation: Tensor, reduce: Reduce) -> Tensor:
    """(N, D) vectors from a layer's outputs: flattened, or (``mean``) averaged over spatial positions."""
    if reduce == "mean" and activation.ndim > 2:
        return activation.mean(dim=tuple(range(2, activation.ndim)))
    return activation.flatten(1)


def prepare_batch(x: Tensor, device: torch.device) -> Tensor:
    """Move a batch to ``device``; image batches go channels-last, the memory layout oneDNN and
    cuDNN convolve fastest. Values and logical shapes are unchanged."""
    x = x.to(device)
    return x.contiguous(memory_format=torch.channels_last) if x.ndim == 4 else x


def _class_source(cls: type) -> str:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):  # built in, or defined where no source is kept
        return ""


def model_fingerprint(model: nn.Module) -> str:
    """Hash of everything that decides a model's activations: each submodule's class (name and
    source), its plain settings (e.g. ``negative_slope``, ``stride``), and every parameter and
    buffer (name, dtype, shape, values). A swapped parameter-free module gives another fingerprint."""
    digest = hashlib.sha256()
    sources: dict[type, str] = {}
    for name, module in model.named_modules():
        cls = type(module)
        if cls not in sources:
            sources[cls] = hashlib.sha256(_class_source(cls).encode()).hexdigest()
        settings = sorted((k, repr(v)) for k, v in vars(module).items()
                          if not k.startswith("_") and isinstance(v, (bool, int, float, str, tuple, type(None))))
        digest.update(repr((name, cls.__module__, cls.__qualname__, sources[cls], settings, module.extra_repr())).encode())
    tensors = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for key, value in tensors:
        digest.update(repr((key, str(value.dtype), tuple(value.shape))).encode())
        digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


def tensor_fingerprint(x: Tensor) -> str:
    """Hash of a tensor's dtype, shape and values (a reshaped tensor gets another fingerprint)."""
    digest = hashlib.sha256(repr((str(x.dtype), tuple(x.shape))).encode())
    digest.update(x.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:20]


@torch.no_grad()
def capture_activations(
    model: nn.Module,
    layers: Sequence[str],
    inputs: Tensor,
    *,
    batch_size: int = 64,
    reduce: Reduce = "flatten",
    cache_dir: str | Path | None = None,
) -> dict[str, Tensor]:
    """Activations (N, D) of each layer for ``inputs``, in mini-batches on the model's device.

    ``reduce="mean"`` averages convolutional maps over space; ``"flatten"`` keeps every unit.
    The forward pass of each batch stops once every requested layer has produced its output
    (a module called several times in one pass is captured at its first call).
    With ``cache_dir``, results are stored under a key of the model's fingerprint (structure,
    settings, parameters, buffers), the layer, the reduction and the inputs' dtype, shape and
    values; a damaged cache file is reported and recomputed.

    Args:
        model: Any torch model.
        layers: Dotted names of the modules whose outputs are captured.
        inputs: (N, ...) inputs.
        batch_size: Inputs per forward pass.
        reduce: How each activation becomes a vector: ``flatten``, or ``mean`` over its spatial positions.
        cache_dir: Keep results on disk, keyed by the model, layer and inputs.

    Returns:
        Per layer name, (N, D) activations.

    Raises:
        ValueError: A layer name is not in the model (the message lists the closest names).

    Examples:
        >>> from conceptlab.concepts import capture_activations
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
        >>> capture_activations(model, ["1"], torch.randn(10, 4))["1"].shape
        torch.Size([10, 8])
    """
    if reduce not in ("flatten", "mean"):
        raise ValueError(f"reduce must be 'flatten' or 'mean'; got {reduce!r}")
    modules = {name: resolve_layer(model, name) for name in layers}
    paths: dict[str, Path] = {}
    if cache_dir is not None:
        key = hashlib.sha256(f"{model_fingerprint(model)}-{tensor_fingerprint(inputs)}-{reduce}".encode()).hexdigest()[:24]
        paths = {name: Path(cache_dir) / f"act-{name}-{key}.pt" for name in layers}
    result = {}
    for name, path in paths.items():
        cached = load_cached(path)
        if isinstance(cached, Tensor) and cached.shape[0] == inputs.shape[0]:
            result[name] = cached
    todo = {name: modules[name] for name in layers if name not in result}
    if todo:
        batches = forward_captures(model, todo, inputs, batch_size, lambda out: reduce_activations(out, reduce).cpu())
        for name in todo:
            result[name] = torch.cat(batches[name])
            if name in paths:
                store_cached(result[name], paths[name])
    return {name: result[name] for name in layers}


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: str, inputs: Tensor, *, batch_size: int = 64) -> Tensor:
    """What ``model`` feeds into ``layer`` for ``inputs`` (N, ...), flattened to (N, D): e.g. the
    embedding a classifier head ``fc`` receives.

    Args:
        model: Any torch model.
        layer: Dotted name of the module whose input is returned (e.g. ``fc``).
        inputs: (N, ...) inputs.
        batch_size: Inputs per forward pass.

    Returns:
        (N, D) inputs of the layer.

    Examples:
        >>> from conceptlab.concepts import layer_inputs
        >>> model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
        >>> layer_inputs(model, "2", torch.randn(5, 4)).shape
        torch.Size([5, 8])
    """
    module = resolve_layer(model, layer)
    batches = forward_captures(model, {layer: module}, inputs, batch_size,
                               lambda x: x.flatten(1).float().cpu(), inputs_of=True)
    return torch.cat(batches[layer])


class _Captured(Exception):
    """Raised by a hook once every requested module has been seen: the rest of the pass is not needed."""


def forward_captures(
    model: nn.Module,
    modules: dict[str, nn.Module],
    inputs: Tensor,
    batch_size: int,
    keep: Callable[[Tensor], Tensor],
    inputs_of: bool = False,
) -> dict[str, list[Tensor]]:
    """Per module, ``keep(output)`` (or of its first input, with ``inputs_of``) for every batch of
    ``inputs``, from eval-mode forward passes on the model's device that stop after the last one."""
    device = next(model.parameters()).device
    collected: dict[str, list[Tensor]] = {name: [] for name in modules}
    seen: set[str] = set()

    def hook(name: str):
        def capture(module, args, output=None):
            if name not in seen:
                seen.add(name)
                collected[name].append(keep(args[0] if inputs_of else output))
            if len(seen) == len(modules):
                raise _Captured

        return capture

    register = (lambda m, h: m.register_forward_pre_hook(h)) if inputs_of else (lambda m, h: m.register_forward_hook(h))
    handles = [register(module, hook(name)) for name, module in modules.items()]
    try:
        with evaluating(model):
            for start in range(0, inputs.shape[0], batch_size):
                seen.clear()
                try:
                    model(prepare_batch(inputs[start : start + batch_size], device))
                except _Captured:
                    pass
                missing = sorted(set(modules) - seen)
                if missing:
                    raise ValueError(f"layer(s) {missing} did not run in the model's forward pass; pick layers it uses")
    finally:
        for handle in handles:
            handle.remove()
    return collected
