"""The evaluation protocol: what must match for two robust accuracies to be compared.

`(norm, ε list, AutoAttack on/off, version, attack list and budget, n_examples, PGD steps)`. Its key (for
grouping), its wording (for pages) and its tag (for file names) are all made here, so a board
header, a CSV column and a RobustBench export never describe one protocol two ways. An attack
list left empty is the version's own list, so "standard" with and without its list spelled
out are one protocol. With AutoAttack disabled the robust number is PGD-k accuracy.

`eps` is the tuple of radii the record was evaluated at (ascending); a record of schema 1
stores one number, read as a tuple of one. With one ε the key, text and tag are exactly those
of schema 1, so boards of single-ε records do not change. The record's top-level robust
metrics are those of the largest ε (`headline_eps`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from pydantic import TypeAdapter

from corebench.core.spec import (
    AUTOATTACK_VERSION_ATTACKS,
    AUTOATTACK_VERSION_SETTINGS,
    EvaluationConfig,
    slug,
)

STANDARD_BUDGET = AUTOATTACK_VERSION_SETTINGS["standard"]
_EVALUATION = TypeAdapter(EvaluationConfig)
ATTACK_TITLES = {"apgd-ce": "APGD-CE", "apgd-dlr": "APGD-DLR", "apgd-t": "APGD-T", "fab": "FAB", "fab-t": "FAB-T",
                 "square": "Square"}  # how titles spell pyautoattack's attack names


@dataclass(frozen=True)
class Protocol:
    norm: str
    eps: tuple[float, ...]  # ascending; a record holds robust accuracy at each
    autoattack_enabled: bool
    autoattack_version: str
    autoattack_attacks: tuple[str, ...]
    n_examples: int
    pgd_steps: int
    apgd_restarts: int = STANDARD_BUDGET["apgd_restarts"]
    apgd_iterations: int = STANDARD_BUDGET["apgd_iterations"]
    target_classes: int = STANDARD_BUDGET["target_classes"]

    @classmethod
    def of(cls, evaluation: EvaluationConfig | Mapping[str, Any]) -> Protocol:
        """The protocol of a record's (resolved) `config.evaluation`: the typed settings
        (`Record.config.evaluation`), or their JSON form, read through the same type. Equal
        settings give the same (cached) object: 10,000 records hold a handful of protocols."""
        if isinstance(evaluation, Mapping):
            evaluation = _EVALUATION.validate_python(dict(evaluation))
        return _protocol_of(evaluation)

    @classmethod
    def _of(cls, evaluation: EvaluationConfig) -> Protocol:
        aa = evaluation.autoattack
        version = aa.version
        attacks = aa.attacks or AUTOATTACK_VERSION_ATTACKS.get(version, ())
        budget = {k: int(getattr(aa, k) or v)
                  for k, v in AUTOATTACK_VERSION_SETTINGS.get(version, STANDARD_BUDGET).items()}  # fmt: skip
        if evaluation.eps is None:
            raise ValueError("evaluation.eps: None; a record's evaluation settings are resolved (ε filled in)")
        return cls(
            norm=evaluation.norm,
            eps=tuple(sorted(float(e) for e in evaluation.eps)),
            autoattack_enabled=bool(aa.enabled),
            autoattack_version=version,
            autoattack_attacks=tuple(attacks),
            n_examples=int(evaluation.n_examples),
            pgd_steps=int(evaluation.pgd_steps or 0),
            **budget,
        )

    @property
    def headline_eps(self) -> float:
        """The largest ε: the one of a record's top-level `pgd_acc` / `autoattack_acc`."""
        return self.eps[-1]

    def as_row(self) -> dict[str, Any]:
        """The protocol columns of a `load()` row (the attack list joined by commas; `eps` is the
        row's own ε, set by the caller)."""
        return {**asdict(self), "autoattack_attacks": ",".join(self.autoattack_attacks)}

    @functools.cached_property
    def key(self) -> str:
        """A canonical string for grouping: equal exactly when the protocols are equal."""
        if self.autoattack_enabled:
            attack = f"autoattack={self.autoattack_version}:{'+'.join(self.autoattack_attacks)}"
            if self.budget_differs():
                attack += f":r{self.apgd_restarts}i{self.apgd_iterations}t{self.target_classes}"
        else:
            attack = f"pgd{self.pgd_steps}"
        eps = repr(self.eps[0]) if len(self.eps) == 1 else "[" + ",".join(repr(e) for e in self.eps) + "]"
        return f"{self.norm}|eps={eps}|{attack}|n={self.n_examples}"

    @property
    def metric(self) -> str:
        """The record metric that is the robust accuracy under this protocol."""
        return "autoattack_acc" if self.autoattack_enabled else "pgd_acc"

    @property
    def attack_name(self) -> str:
        """'AutoAttack' or 'PGD-k': the attack that makes the robust number."""
        return "AutoAttack" if self.autoattack_enabled else f"PGD-{self.pgd_steps}"

    @property
    def attack_title(self) -> str:
        """The attack as a title names it: 'AutoAttack' only for the full `standard` AutoAttack
        (its own attacks and budget); otherwise the attacks that ran, as 'APGD-CE + APGD-T
        (3 targets)', so a reduced attack is never read as AutoAttack (issue 18)."""
        if not self.autoattack_enabled:
            return self.attack_name
        full = AUTOATTACK_VERSION_ATTACKS["standard"]
        if self.autoattack_version == "standard" and self.autoattack_attacks == full and not self.budget_differs():
            return "AutoAttack"
        names = []
        for attack in self.autoattack_attacks:
            name = ATTACK_TITLES.get(attack, attack)
            if attack.endswith("-t"):
                name += f" ({self.target_classes} target" + ("s)" if self.target_classes != 1 else ")")
            names.append(name)
        return " + ".join(names)

    @property
    def metric_name(self) -> str:
        return f"{self.attack_title} accuracy"

    def budget_differs(self) -> bool:
        """The attacks' budget is not what the version itself sets (a custom strength)."""
        own = AUTOATTACK_VERSION_SETTINGS.get(self.autoattack_version, STANDARD_BUDGET)
        return (self.apgd_restarts, self.apgd_iterations, self.target_classes) != tuple(own.values())

    def attack_text(self, code: bool = True) -> str:
        """The attack in words: AutoAttack `standard` (apgd-ce, ...) or PGD-k (AutoAttack disabled);
        a budget other than the version's own is spelled out."""
        if not self.autoattack_enabled:
            return f"PGD-{self.pgd_steps} (AutoAttack disabled)"
        version = f"`{self.autoattack_version}`" if code else self.autoattack_version
        budget = ""
        if self.budget_differs():
            targeted = any(a.endswith("-t") for a in self.autoattack_attacks)
            restarts = f"{self.apgd_restarts} restart" + ("s" if self.apgd_restarts != 1 else "")
            budget = (f"; APGD {restarts} × {self.apgd_iterations} iterations"
                      + (f", {self.target_classes} target classes" if targeted else ""))  # fmt: skip
        return f"AutoAttack {version} ({', '.join(self.autoattack_attacks)}{budget})"

    def text(self) -> str:
        """The protocol in words, for page headers and the index."""
        return f"{self.norm} {self.eps_words()}, {self.attack_text()}, first {self.n_examples} test examples"

    def eps_words(self) -> str:
        """'ε = 8/255 (0.03137)', or 'ε ∈ {1/255, 2/255, 8/255}' for several."""
        if len(self.eps) > 1:
            return "ε ∈ {" + ", ".join(eps_text(e) for e in self.eps) + "}"
        eps = eps_text(self.eps[0])
        return f"ε = {eps}" + (f" ({self.eps[0]:.4g})" if "/" in eps else "")

    def tag(self) -> str:
        """A file-name tag, for boards of one group that differ in protocol."""
        eps = "+".join(eps_text(e).replace("/", "_").replace(".", "p") for e in self.eps)
        if self.autoattack_enabled:
            attack = f"aa-{self.autoattack_version}"
            if self.autoattack_version == "custom":
                attack += "-" + "+".join(self.autoattack_attacks)
            if self.budget_differs():
                attack += f"-r{self.apgd_restarts}i{self.apgd_iterations}t{self.target_classes}"
        else:
            attack = f"pgd{self.pgd_steps}"
        return slug(f"{self.norm.lower()}-eps{eps}-{attack}-n{self.n_examples}")


@functools.lru_cache(maxsize=256)
def _protocol_of(evaluation: EvaluationConfig) -> Protocol:
    """`Protocol.of` of typed settings (frozen, so hashable), once per distinct settings."""
    return Protocol._of(evaluation)


def eps_text(eps: float) -> str:
    """ε as k/255 when it is one (8/255), else a short decimal."""
    k = eps * 255
    if round(k) >= 1 and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{eps:g}"
