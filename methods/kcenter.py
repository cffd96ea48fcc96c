"""k-center greedy: keep points that cover feature space (farthest-point traversal).

Paper: Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
Approach", ICLR 2018. References: DeepCore, github.com/PatrickZH/DeepCore at 74ec709,
`deepcore/methods/kcentergreedy.py` (`k_center_greedy`, class `kCenterGreedy`); Coleman et al.,
"Selection via Proxy", ICLR 2020, github.com/stanford-futuredata/selection-via-proxy,
`svp/common/selection/k_center_greedy.py` with `svp/cifar/coreset.py`.

The algorithm (DeepCore `k_center_greedy`, l.8-65): start from random initial centres; keep,
for every point, its Euclidean distance to the nearest centre; repeatedly add the point
farthest from every centre (`argmax`, the first on ties) until the budget is spent. The
initial centres count toward the budget (DeepCore `budget -= 1`; SVP `subset - len(current)`).
Distances are true (square-rooted) Euclidean distances, as DeepCore's `euclidean_dist`;
ranking by squared distance picks the same points.

Features: the penultimate `features` [N, D] of the scoring run's final model (eval mode,
un-augmented), i.e. the grid's scoring architecture trained from scratch on the full train
set. DeepCore's class embeds with a torchvision ResNet-18 pretrained on ImageNet
(`specific_model="ResNet18"`, `torchvision_pretrain=True`, inputs resized to 224 px), not
trained further with the class default `epochs=0` and fine-tuned for `--selection_epochs`
(40) by its `main.py`. corebench cannot do that: it loads no pretrained weights (it runs
offline, and ImageNet pretraining would bring outside data into a benchmark that trains
every model from scratch). Pick `scoring_architectures: [resnet18]` for DeepCore's
architecture; SVP, too, embeds with its own proxy trained from scratch (`keep='fc'`).

Options where the references disagree (default first, with its source):
- `initial`: 1 random initial centre (DeepCore: `np.random.randint(0, sample_num)`, seeded);
  SVP's core-set selection starts from 1,000 random points (`svp/cifar/coreset.py` l.238-242).
  The draw comes from the cell's seed (`ctx.rng()`).
- `class_balanced`: False, one traversal over all points (DeepCore's class default, SVP);
  DeepCore's `main.py` runs balanced (`--balance True`: a traversal per class with budget
  round(n_c × fraction) and the same seed per class); True here runs one per class with
  exact class budgets, each class from a fresh generator of the same seed.

Cost: O(N × budget × D), one distance row per pick. The traversal for a budget is a prefix
of the one for a larger budget, so a method object keeps its traversal and extends it: a grid
with several fractions pays for the largest only (measured in benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from corebench.core.errors import MethodError
from corebench.methods._common import class_budgets
from corebench.methods.base import CoresetMethod, PositiveCount, SelectionContext
from corebench.methods.registry import register_method


@dataclass
class Traversal:
    """A resumable farthest-point traversal of `points` (rows) from a random start."""

    points: np.ndarray
    start: np.ndarray  # the random initial centres, in draw order
    order: list[int] = field(default_factory=list)
    mins: np.ndarray | None = None  # squared distance to the nearest centre; -1 once picked

    def __post_init__(self) -> None:
        self.points = np.ascontiguousarray(self.points, dtype=np.float32)
        self._sq = np.einsum("ij,ij->i", self.points, self.points, dtype=np.float64)

    def _sqdist(self, i: int) -> np.ndarray:
        d = self._sq - 2.0 * (self.points @ self.points[i]).astype(np.float64) + self._sq[i]
        return np.maximum(d, 0.0)

    def first(self, k: int) -> np.ndarray:
        """The first k points of the traversal (positions into `points`)."""
        n = self.points.shape[0]
        k = min(k, n)
        if len(self.order) >= k:
            return np.asarray(self.order[:k], dtype=np.int64)
        if self.mins is None:
            self.order = [int(i) for i in self.start]
            if k <= len(self.order):
                return np.asarray(self.order[:k], dtype=np.int64)
            self.mins = np.full(n, np.inf)
            for i in self.order:
                self.mins = np.minimum(self.mins, self._sqdist(i))
            self.mins[self.order] = -1.0
        while len(self.order) < k:
            p = int(np.argmax(self.mins))
            self.order.append(p)
            self.mins = np.minimum(self.mins, self._sqdist(p))  # always, so a later call can resume
            self.mins[p] = -1.0
        return np.asarray(self.order[:k], dtype=np.int64)


@dataclass(frozen=True)
class KCenterParams:
    initial: PositiveCount = 1  # random initial centres, counted in the budget
    class_balanced: bool = False


@register_method("kcenter")
class KCenterGreedy(CoresetMethod):
    """Keep points that cover the feature space: greedy k-center (farthest-point) on features."""

    reference = "Sener & Savarese 2018, PatrickZH/DeepCore"

    Params = KCenterParams
    class_balanced_source = "off: DeepCore `kcentergreedy.py` (`balance=False` by default) and Coleman's SVP traverse all points"
    reference_budget = "epochs: DeepCore `main.py --epochs` (default 200)"
    randomness = "the first centre is drawn at random (DeepCore `kcentergreedy.py`)"
    signals = ("features",)
    selection_cost = "greedy"

    def __init__(self, params: KCenterParams | None = None) -> None:
        super().__init__(params)
        self._traversals: dict[tuple, tuple[np.ndarray, Traversal]] = {}

    def select(self, ctx: SelectionContext, fraction: float) -> np.ndarray:
        (features,) = ctx.signal_runs("features")
        if features.ndim != 2 or features.shape[0] != ctx.n:
            raise MethodError(f"method {self.name!r}: features have shape {features.shape}, expected ({ctx.n}, D)")
        if not np.isfinite(features).all():
            bad = int(np.flatnonzero(~np.isfinite(features).all(axis=1))[0])
            raise MethodError(f"method {self.name!r}: features are NaN or infinite (first at sample {bad})")
        budget = ctx.budget(fraction)
        if not self.params.class_balanced:
            return np.sort(self._traversal(features, ctx, None).first(budget))
        picked = []
        for cls, k in class_budgets(ctx.labels, budget).items():
            members = np.flatnonzero(ctx.labels == cls)
            picked.append(members[self._traversal(features, ctx, cls).first(k)])
        return np.sort(np.concatenate(picked))

    def _traversal(self, features: np.ndarray, ctx: SelectionContext, cls: int | None) -> Traversal:
        """The traversal for these features (the same array object), seed and class, kept."""
        key = (id(features), ctx.seed, cls)
        held = self._traversals.get(key)
        if held is not None and held[0] is features:
            return held[1]
        points = features if cls is None else features[ctx.labels == cls]
        rng = ctx.rng()  # a fresh generator of the cell's seed (per class: the same seed, as DeepCore)
        n = points.shape[0]
        start = np.array([rng.integers(n)]) if self.params.initial == 1 else rng.permutation(n)[: self.params.initial]
        traversal = Traversal(points, start)
        self._traversals[key] = (features, traversal)  # holding `features` keeps its id unique
        return traversal
