"""The signal registry: what a scoring run can record, declared in one torch-free place.

A signal is one per-sample array the scoring run (`corebench.compute.scoring`) records while it trains
the proxy model on the full train set. Each is declared here, like a method in the method
registry: its name, its shape, when it is taken, its dtype (so its memory), and one line on
what it is. The scoring run records exactly the union of the signals a grid's methods declare;
the method kit (`corebench.methods.testing`) fakes them without torch; the docs' signal tables
are generated from the declarations (`python -m corebench.signals`, a test keeps them equal).

When a signal is taken, and the shapes that go with it (E scoring epochs, K snapshot epochs,
N train samples, C classes, D feature width):

    train_pass  [E, N]                    the training step's own forward/backward (train mode, augmented)
    eval_pass   [E, N]                    a pass of its own after every epoch (eval mode, un-augmented)
    snapshot    [K, N] or [K, N, C]       eval mode, un-augmented, at `scoring.snapshot_epochs`
                                          (their epochs come along as `snapshot_epochs` [K])
    final       [N, D] or [N, C]          the final scoring model, eval mode, un-augmented

Plug-in packages declare more signals under the entry-point group `corebench.signals`: the
entry point names a module (importing it calls `register_signal`) or a `Signal` (or a list of
them). A plug-in signal names its `compute` hook ("module:function", imported by the scoring
run only, so it may use torch) and optionally a torch-free `fake` for the kit; see
CONTRIBUTING.md, "Ask for a signal".
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

from corebench.core.codehash import code_fingerprint
from corebench.core.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "corebench.signals"
SNAPSHOT_EPOCHS = "snapshot_epochs"  # [K] int64: the epochs the snapshot rows were taken at
BUILTIN = "corebench"  # the distribution of the built-in signals

TAKEN: dict[str, tuple[tuple[str, ...], ...]] = {  # when a signal is taken -> the shapes allowed
    "train_pass": (("E", "N"), ("E", "N", "C")),
    "eval_pass": (("E", "N"),),
    "snapshot": (("K", "N"), ("K", "N", "C")),
    "final": (("N", "D"), ("N", "C")),
}
DTYPES: dict[str, int] = {"float32": 4, "float16": 2, "bool": 1}  # dtype -> bytes per element
TAKEN_TEXT = {
    "train_pass": "training pass",
    "eval_pass": "eval pass, every epoch",
    "snapshot": "eval-mode snapshots",
    "final": "final model",
}


@dataclass(frozen=True)
class Signal:
    """One signal a scoring run can record.

    Attributes:
        name: lowercase letters, digits and '_'; what methods list in `signals`.
        shape: axis letters, one of `TAKEN[taken]` (e.g. ("K", "N", "C")).
        taken: "train_pass", "eval_pass", "snapshot" or "final".
        dtype: "float32", "float16" or "bool".
        what: one line: the definition, with its reference where it has one.
        compute: plug-ins only: "module:function" the scoring run calls (see CONTRIBUTING.md).
        fake: optional "module:function" the kit calls for a plausible fake (torch-free).
        distribution: the package that declares it ("corebench" for the built-ins).
        cost: what recording it costs, in passes over the train data (one line; "" unknown).
    """

    name: str
    shape: tuple[str, ...]
    taken: str
    dtype: str
    what: str
    compute: str | None = None
    fake: str | None = None
    distribution: str = BUILTIN
    cost: str = ""

    @property
    def shape_text(self) -> str:
        return "[" + ", ".join(self.shape) + "]"

    def bytes_per_sample(self, epochs: int = 1, snapshots: int = 1, classes: int = 1, features: int = 1) -> int:
        """Memory per train sample for a run with these sizes (E, K, C, D)."""
        sizes = {"E": epochs, "K": snapshots, "C": classes, "D": features, "N": 1}
        count = 1
        for axis in self.shape:
            count *= sizes[axis]
        return count * DTYPES[self.dtype]

    @property
    def memory_text(self) -> str:
        """Bytes per sample as a formula: '4·E', '2·K·C', '1·E'."""
        axes = [a for a in self.shape if a != "N"]
        return "·".join([str(DTYPES[self.dtype]), *axes]) + " B"


# What a built-in costs by when it is taken, unless its declaration says otherwise.
COST = {
    "train_pass": "none (the training step's own forward)",
    "eval_pass": "1 forward + backward per epoch",
    "snapshot": "1 forward per snapshot",
    "final": "1 forward",
}
# An adversarial signal: free under PGD-AT and TRADES (the training attack's example), a PGD
# attack of its own under a standard run.
ADV_COST = "1 forward per epoch, + `attack.steps` forward + backward under a standard run"


def _builtin(name: str, shape: str, taken: str, dtype: str, what: str, cost: str = "") -> Signal:
    return Signal(name, tuple(a.strip() for a in shape.strip("[]").split(",")), taken, dtype, what,
                  cost=cost or COST[taken])


# The built-in signals, in the order the docs list them. Their computation is corebench.compute.scoring's.
BUILTINS: tuple[Signal, ...] = (
    _builtin("input_grad_norm", "[E, N]", "train_pass", "float32",
             "‖∇ₓ CE‖₂ from the training step's own backward (with train-mode BatchNorm the batch couples "
             "samples: ∇ₓᵢ Σⱼ CEⱼ), nearly free"),
    _builtin("input_grad_norm_eval", "[E, N]", "eval_pass", "float32",
             "exact per-sample ‖∇ₓ CE‖₂, eval mode, un-augmented, after every epoch (a pass of its own)"),
    _builtin("correct", "[E, N]", "train_pass", "bool", "prediction correct in the training pass"),
    _builtin("loss", "[E, N]", "train_pass", "float32", "per-sample cross-entropy, training pass"),
    _builtin("el2n", "[E, N]", "train_pass", "float32", "‖softmax − onehot‖₂, training pass (Paul et al. 2021)"),
    _builtin("margin_logits", "[E, N]", "train_pass", "float32",
             "AUM margin z_y − max_{k≠y} z_k on logits, training pass (Pleiss et al. 2020)"),
    _builtin("margin_probs", "[E, N]", "train_pass", "float32", "the same margin on softmax probabilities"),
    _builtin("logits_train", "[E, N, C]", "train_pass", "float16",
             "class logits of the training pass, every epoch (TDDS's per-epoch outputs, zhangxin-xd/Dataset-Pruning-TDDS)"),
    _builtin("adv_loss", "[E, N]", "train_pass", "float32",
             "per-sample CE on the step's adversarial example (the training attack's; PGD under a standard run), "
             "eval mode, before the update", ADV_COST),
    _builtin("adv_margin", "[E, N]", "train_pass", "float32",
             "AUM margin z_y − max_{k≠y} z_k on the same adversarial example, eval mode", ADV_COST),
    _builtin("adv_correct", "[E, N]", "train_pass", "bool",
             "prediction correct on the same adversarial example; Σ over epochs of its negation is Dong et al.'s "
             "count of PGD-misclassified epochs (shwinshaker/RobustDataProfiling `ExampleTracker.count_wrong`)", ADV_COST),
    _builtin("adv_input_grad_norm", "[E, N]", "train_pass", "float32",
             "exact per-sample ‖∇ₓ CE‖₂ at the adversarial example, eval mode",
             "1 forward + backward per epoch, + `attack.steps` forward + backward under a standard run"),
    _builtin("el2n_eval", "[K, N]", "snapshot", "float32", "‖softmax − onehot‖₂ in eval mode"),
    _builtin("loss_eval", "[K, N]", "snapshot", "float32", "per-sample cross-entropy in eval mode"),
    _builtin("logits_eval", "[K, N, C]", "snapshot", "float16",
             "class logits in eval mode (softmax them for probabilities)"),
    _builtin("grand_all", "[K, N]", "snapshot", "float32",
             "per-sample ‖∇_θ CE‖₂ over all parameters (torch.func vmap; data_diet `get_grad_norm_fn`)",
             "1 per-sample backward per snapshot"),
    _builtin("grand_last", "[K, N]", "snapshot", "float32",
             "the same over the classifier only, closed form ‖p − y‖·√(‖h‖² + 1) (DeepCore `grand.py`)"),
    _builtin("features", "[N, D]", "final", "float32", "penultimate features (timm pre-logits)"),
    _builtin("logits_final", "[N, C]", "final", "float16", "class logits (softmax them for probabilities)"),
)  # fmt: skip

_REGISTRY: dict[str, Signal] = {}
_entry_points_loaded = False


def _check_declaration(sig: Signal) -> None:
    where = f"signal {sig.name!r}" + (f" (from {sig.distribution})" if sig.distribution != BUILTIN else "")
    if not isinstance(sig.name, str) or not sig.name or not sig.name.replace("_", "").isalnum() or sig.name != sig.name.lower():
        raise ConfigError(f"signal name {sig.name!r} is not allowed; allowed: lowercase letters, digits, '_'")
    if sig.name == SNAPSHOT_EPOCHS:
        raise ConfigError(f"signal name {sig.name!r} is reserved (the snapshot epochs come with every snapshot signal)")
    if sig.taken not in TAKEN:
        raise ConfigError(f"{where}: taken {sig.taken!r} is not allowed; allowed: {', '.join(TAKEN)}")
    if tuple(sig.shape) not in TAKEN[sig.taken]:
        shapes = " or ".join("[" + ", ".join(s) + "]" for s in TAKEN[sig.taken])
        raise ConfigError(f"{where}: shape {list(sig.shape)} is not allowed for taken {sig.taken!r}; allowed: {shapes}")
    if sig.dtype not in DTYPES:
        raise ConfigError(f"{where}: dtype {sig.dtype!r} is not allowed; allowed: {', '.join(DTYPES)}")
    if sig.distribution != BUILTIN and not (isinstance(sig.compute, str) and ":" in sig.compute):
        raise ConfigError(f"{where}: compute {sig.compute!r} is not allowed; allowed: 'module:function' (the scoring hook)")
    if sig.fake is not None and not (isinstance(sig.fake, str) and ":" in sig.fake):
        raise ConfigError(f"{where}: fake {sig.fake!r} is not allowed; allowed: None or 'module:function'")


def register_signal(sig: Signal) -> Signal:
    """Declare a signal (a plug-in's, or a built-in's); a second, different declaration is an error."""
    if not isinstance(sig, Signal):
        raise ConfigError(f"register_signal: {sig!r} is not allowed; allowed: a corebench.signals.Signal")
    sig = Signal(**{**sig.__dict__, "shape": tuple(sig.shape)})
    _check_declaration(sig)
    existing = _REGISTRY.get(sig.name)
    if existing is not None and existing != sig:
        raise ConfigError(
            f"signal name {sig.name!r} is already registered by {existing.distribution}; "
            f"registered: {', '.join(sorted(_REGISTRY))}"
        )
    _REGISTRY[sig.name] = sig
    return sig


for _sig in BUILTINS:
    register_signal(_sig)


def loaded_entry_points(group: str, kind: str, failed: dict[str, str] | None = None
                        ) -> Iterator[tuple[metadata.EntryPoint, Any]]:
    """(entry point, loaded object) for each entry point of `group` that imports; one that
    fails is logged as a warning naming it and skipped (listing methods never stops on a broken
    plug-in; a grid with `methods: all` does, `grid._methods`), and put in `failed` (entry point
    name -> one line naming its package, module and error). Shared by both registries."""
    for ep in metadata.entry_points(group=group):
        try:
            loaded = ep.load()
        except Exception as exc:
            log.warning("could not load %s plug-in %s (%s): %s", kind, ep.name, ep.value, exc)
            if failed is not None:
                dist = ep.dist.name if ep.dist is not None else "no installed package"
                failed[ep.name] = f"{ep.name} ({ep.value}, package {dist}): {type(exc).__name__}: {exc}"
            continue
        yield ep, loaded


def load_entry_points() -> None:
    """Import the signals advertised under the `corebench.signals` entry-point group."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep, loaded in loaded_entry_points(ENTRY_POINT_GROUP, "signal"):
        found = [loaded] if isinstance(loaded, Signal) else list(loaded) if isinstance(loaded, (list, tuple)) else []
        dist = ep.dist.name if ep.dist is not None else None
        try:
            for sig in found:
                if dist and sig.distribution == BUILTIN:
                    sig = Signal(**{**sig.__dict__, "distribution": dist})
                register_signal(sig)
        except Exception as exc:  # a bad declaration: that plug-in's signals are left out
            log.warning("could not load signal plug-in %s (%s): %s", ep.name, ep.value, exc)


def list_signals() -> list[str]:
    """Every known signal name: the built-ins in doc order, then plug-ins sorted."""
    load_entry_points()
    builtin = [s.name for s in BUILTINS]
    return builtin + sorted(n for n in _REGISTRY if n not in builtin)


def get_signal(name: str) -> Signal:
    load_entry_points()
    if name not in _REGISTRY:
        raise ConfigError(f"signals: {name!r} is not recorded by the scoring run; allowed: {', '.join(list_signals())}")
    return _REGISTRY[name]


def signal_code(name: str) -> str | None:
    """A hash of a plug-in signal's code (the package of its `compute` hook), None for the
    built-ins: a cached value of a plug-in signal is only served while its code is unchanged."""
    load_entry_points()
    sig = _REGISTRY.get(name)
    if sig is None or sig.distribution == BUILTIN or not sig.compute:
        return None
    return code_fingerprint(sig.compute.split(":")[0])


def taken_at(taken: str, names: Iterable[str]) -> list[str]:
    """The names among `names` taken at `taken`, sorted."""
    return sorted(n for n in set(names) if get_signal(n).taken == taken)


def check_signals(names: Iterable[str]) -> set[str]:
    """The names as a set, or a ConfigError naming the first one no scoring run records."""
    names = set(names)
    for name in sorted(names):
        get_signal(name)
    return names


def import_hook(name: str) -> Callable[..., Any]:
    """A plug-in signal's compute hook, imported from its "module:function" (the one place)."""
    module, _, attr = (get_signal(name).compute or "").partition(":")
    return getattr(importlib.import_module(module), attr)


def unimportable_hooks(names: Iterable[str]) -> dict[str, str]:
    """The plug-in signals among `names` whose compute hook cannot be imported, with why: a grid
    checks this before any run (without importing the torch scoring module), a scoring run
    drops them and fails only the methods that declared them."""
    failed = {}
    for name in sorted(names):
        sig = get_signal(name)
        if sig.distribution == BUILTIN:
            continue
        try:
            import_hook(name)
        except Exception as exc:
            failed[name] = f"compute {sig.compute!r} cannot be imported ({type(exc).__name__}: {exc})"
    return failed


def unknown_signals(names: Iterable[str]) -> list[str]:
    """The names no scoring run records, sorted."""
    load_entry_points()
    return sorted(set(names) - set(_REGISTRY))


def companions(names: Iterable[str]) -> set[str]:
    """What comes along with the signals: the snapshot epochs with any snapshot signal."""
    return {SNAPSHOT_EPOCHS} if any(get_signal(n).taken == "snapshot" for n in set(names)) else set()


def until(signals: dict[str, np.ndarray], epochs: int) -> dict[str, np.ndarray]:
    """The signals a run stopped after `epochs` epochs records: per-epoch rows 1..epochs,
    snapshots taken at epochs <= `epochs` (a longer run of the same schedule agrees on these)."""
    out = dict(signals)
    keep = np.asarray(out[SNAPSHOT_EPOCHS]) <= epochs if SNAPSHOT_EPOCHS in out else None
    if keep is not None:
        out[SNAPSHOT_EPOCHS] = np.asarray(out[SNAPSHOT_EPOCHS])[keep]
    for name in set(out) & set(list_signals()):
        sig = get_signal(name)
        if sig.shape[0] == "E":
            out[name] = out[name][:epochs]
        elif sig.taken == "snapshot" and keep is not None:
            out[name] = out[name][keep]
    return out


# The signals read on an adversarial example of each training step (`Signal.cost` says what each costs).
ADVERSARIAL: tuple[str, ...] = ("adv_loss", "adv_margin", "adv_correct", "adv_input_grad_norm")

# Built-in names by when they are taken (the torch-free vocabulary other modules import).
TRAIN_PASS: tuple[str, ...] = tuple(s.name for s in BUILTINS if s.taken == "train_pass")
EVAL_PASS: tuple[str, ...] = tuple(s.name for s in BUILTINS if s.taken == "eval_pass")
SNAPSHOT: tuple[str, ...] = tuple(s.name for s in BUILTINS if s.taken == "snapshot")
FINAL: tuple[str, ...] = tuple(s.name for s in BUILTINS if s.taken == "final")
ALL_SIGNALS: tuple[str, ...] = tuple(s.name for s in BUILTINS)


def markdown_table(signals: Iterable[Signal] = BUILTINS) -> str:
    """The docs' signal table (DESIGN.md and CONTRIBUTING.md hold it verbatim; a test checks)."""
    rows = ["| signal | shape | taken | dtype | bytes per sample | cost (passes over the data) | what |",
            "|---|---|---|---|---|---|---|"]
    for s in signals:
        rows.append(f"| `{s.name}` | {s.shape_text} | {TAKEN_TEXT[s.taken]} | {s.dtype} | {s.memory_text} | "
                    f"{s.cost or 'unknown'} | {s.what} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m corebench.signals: the table the docs hold
    print(markdown_table())
