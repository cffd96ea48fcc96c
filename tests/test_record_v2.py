"""Record schema 2 (robust accuracy per ε, what was trained, what it cost) and reading schema 1."""

from __future__ import annotations

import json

import pytest

from corebench.core.errors import ResultsError
from corebench.core.protocol import Protocol
from corebench.store.record import SCHEMA_VERSION, parse_record

from records import example_record


def test_schema_1_records_are_still_read():
    old = example_record(schema_version=1, eps=32 / 255)
    assert old["config"]["evaluation"]["eps"] == 32 / 255 and "training" not in old and "robust" not in old["metrics"]
    rec = parse_record(json.dumps(old))
    assert rec.schema_version == 1 and rec.training is None and rec.cost is None and rec.metrics.robust is None
    assert SCHEMA_VERSION == 2


def test_schema_2_requires_training_cost_and_one_robust_entry_per_eps():
    rec = example_record(eps=[2 / 255, 8 / 255, 1 / 255])
    parsed = parse_record(json.dumps(rec))
    assert [r.eps for r in parsed.metrics.robust] == [1 / 255, 2 / 255, 8 / 255]
    assert parsed.training.budget == "epochs" and parsed.cost.train_steps == parsed.training.steps
    for drop in ("training", "cost"):
        broken = {k: v for k, v in rec.items() if k != drop}
        with pytest.raises(ResultsError, match=f"^{drop}: required when status is ok"):
            parse_record(json.dumps(broken))
    short = json.loads(json.dumps(rec))
    short["metrics"]["robust"] = short["metrics"]["robust"][:2]
    with pytest.raises(ResultsError, match="metrics.robust: .* one entry per config.evaluation.eps"):
        parse_record(json.dumps(short))
    wrong_top = json.loads(json.dumps(rec))
    wrong_top["metrics"]["autoattack_acc"] = wrong_top["metrics"]["robust"][0]["autoattack_acc"]
    with pytest.raises(ResultsError, match="must equal metrics.robust's entry of the largest ε"):
        parse_record(json.dumps(wrong_top))
    failed = example_record(error="RuntimeError: boom")
    assert parse_record(json.dumps(failed)).training is None  # a failed cell has none
    neg = json.loads(json.dumps(rec))
    neg["cost"]["scoring_runs"] = [{"key": "k", "seed": 1, "epochs": -1, "seconds": 1.0}]
    with pytest.raises(ResultsError, match="cost.scoring_runs.epochs"):
        parse_record(json.dumps(neg))


def test_one_eps_gives_the_schema_1_protocol_key_text_and_tag():
    one_v1 = Protocol.of(example_record(schema_version=1, eps=8 / 255)["config"]["evaluation"])
    one_v2 = Protocol.of(example_record(eps=8 / 255)["config"]["evaluation"])
    assert one_v1 == one_v2 and one_v2.eps == (8 / 255,)
    assert (one_v2.key, one_v2.text(), one_v2.tag()) == (
        "Linf|eps=0.03137254901960784|autoattack=custom:apgd-ce+apgd-t|n=450",
        "Linf ε = 8/255 (0.03137), AutoAttack `custom` (apgd-ce, apgd-t), first 450 test examples",
        "linf-eps8_255-aa-custom-apgd-ce+apgd-t-n450",
    )


def test_several_eps_make_one_protocol_with_the_largest_as_headline():
    proto = Protocol.of(example_record(eps=[8 / 255, 1 / 255, 2 / 255])["config"]["evaluation"])
    assert proto.eps == (1 / 255, 2 / 255, 8 / 255) and proto.headline_eps == 8 / 255
    assert proto.key == "Linf|eps=[0.00392156862745098,0.00784313725490196,0.03137254901960784]|autoattack=custom:apgd-ce+apgd-t|n=450"
    assert proto.text().startswith("Linf ε ∈ {1/255, 2/255, 8/255}, AutoAttack")
    assert proto.tag() == "linf-eps1_255+2_255+8_255-aa-custom-apgd-ce+apgd-t-n450"
    assert proto != Protocol.of(example_record(eps=8 / 255)["config"]["evaluation"])  # boards never mix them
